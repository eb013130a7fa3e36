"""Receptive fields from the module graph against values derived by hand, and measured by gradients."""

import pytest
import torch
import torchvision
from torch import nn

from models.receptive_field import Field, empirical_size, theoretical_fields


def stack(pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()]
    layers += [nn.MaxPool2d(2)] if pool else []
    return nn.Sequential(*layers, nn.Conv2d(4, 4, 3, padding=1))


def test_hand_built_stacks():
    """Two 3x3 convolutions: 1 + 2 + 2 = 5, padding 1 + 1. With a stride-2 2x2 pool between them:
    3, then 3 + 1 = 4 at stride 2, then 4 + 2 * 2 = 8, padding 1 + 0 + 1 * 2 = 3."""
    assert theoretical_fields(stack(pool=False))["2"] == Field((5, 5), (1, 1), (2, 2))
    fields = theoretical_fields(stack(pool=True))
    assert fields["2"] == Field((4, 4), (2, 2), (1, 1))
    assert fields["3"] == Field((8, 8), (2, 2), (3, 3))


@pytest.mark.parametrize(("pool", "size"), [(False, 5), (True, 8)])
def test_gradients_reach_the_theoretical_field(pool, size):
    torch.manual_seed(0)
    net = stack(pool)
    assert empirical_size(net, net[-1], torch.zeros(1, 1, 32, 32)) == (size, size)


def test_vgg16():
    """3x3 convolutions add 2 x stride, 2x2 pools 1 x stride and double it: block 1 gives 1 + 2 + 2 = 5,
    pool 6; block 2 6 + 4 + 4 = 14, pool 16; block 3 16 + 3 x 8 = 40, pool 44; block 4 44 + 3 x 16 = 92,
    pool 100; block 5 100 + 3 x 32 = 196 (conv5_3), pool5 212 at stride 32. Each convolution pads 1 x its
    stride: 2 + 4 + 12 + 24 + 48 = 90."""
    fields = theoretical_fields(torchvision.models.vgg16(weights=None))
    assert fields["features.28"].size == (196, 196) and fields["features.29"].size == (196, 196)
    assert fields["features.30"] == Field((212, 212), (32, 32), (90, 90))
    assert fields["classifier.0"].whole


def test_resnet18_takes_the_longest_path_through_residual_blocks():
    """conv1 7x7/2: 7; maxpool 3x3/2: 7 + 2 x 2 = 11 at stride 4; layer1's four 3x3: 11 + 4 x 8 = 43;
    layer2 (stride 8 after its first conv): 43 + 8 + 3 x 16 = 99; layer3: 99 + 16 + 3 x 32 = 211; layer4:
    211 + 32 + 3 x 64 = 435 at stride 32, padded 3 + 2 + 16 + (4 + 24) + (8 + 48) + (16 + 96) = 217. The
    1x1 shortcuts are shorter paths."""
    fields = theoretical_fields(torchvision.models.resnet18(weights=None))
    assert fields["maxpool"].size == (11, 11) and fields["layer1.1.conv2"].size == (43, 43)
    assert fields["layer2.0.downsample.0"].size == (43, 43)  # the shortcut alone
    assert fields["layer2.1.conv2"].size == (99, 99) and fields["layer3.1.conv2"].size == (211, 211)
    assert fields["layer4.1.conv2"] == Field((435, 435), (32, 32), (217, 217))
    assert fields["fc"].whole


def test_layers_command_prints_theoretical_and_measured_fields(capsys):
    """Lees's LeNet: 3x3 conv 3; 2x2 pool 4 at stride 2; 3x3 conv 4 + 2 x 2 = 8; pool 10 at stride 4."""
    from pathlib import Path

    from lightning_app.layers import main

    config = str(Path(__file__).resolve().parents[1] / "configs" / "mnist_lenet_explain.yaml")
    main(["--config", config, "--receptive-field", "--empirical"])
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines() if line}
    assert rows["layer"][-4:] == ["field", "stride", "padding", "measured"]
    assert rows["net.conv2"][-4:] == ["8", "2", "0", "8"]
    assert rows["net.pool2"][-4:] == ["10", "4", "0", "10"]
    assert rows["net.fc1"][-1] == "whole"


def test_dataset_example_crop_is_the_receptive_field_of_the_strongest_unit():
    """With positive weights, no bias, average pooling and a positive image, every pixel of a unit's field
    reaches its gradient: the theoretical window (clipped to the image) equals the gradient's extent, at
    the corner (clipped by the padding) and inside. Layer "3": field 8, stride 2, padding 3 -> unit
    (r, c) sees rows 2 r - 3 to 2 r + 4."""
    from callbacks.feature_vis.examples import field_box, receptive_box
    from callbacks.feature_vis.objectives import Channel

    net = stack(pool=True)
    net[2] = nn.AvgPool2d(2)  # a max-pool passes the gradient of one pixel of four
    for layer in (net[0], net[3]):
        nn.init.uniform_(layer.weight, 0.1, 1.0)
        nn.init.zeros_(layer.bias)
    field = theoretical_fields(net)["3"]
    assert field_box(field, 0, 0, 32, 32) == (0, 0, 5, 5)
    assert field_box(field, 5, 9, 32, 32) == (7, 15, 15, 23)
    assert field_box(field, 15, 15, 30, 32) == (27, 27, 30, 32)
    channel = Channel(layer="3", channel=1)
    for spot in ((0, 0), (13, 21)):
        image = torch.full((1, 1, 32, 32), 0.01)
        image[0, 0, spot[0], spot[1]] = 10.0  # the strongest unit is the one over this pixel
        theoretical = receptive_box(net, channel, image, field)
        assert theoretical == receptive_box(net, channel, image, None)  # the gradient's extent
        assert theoretical[0] <= spot[0] < theoretical[2] and theoretical[1] <= spot[1] < theoretical[3]


def test_layers_after_up_sampling_have_no_computed_field():
    from models.nets.fcn import VGG16FCN

    fields = theoretical_fields(VGG16FCN("8s", classes=2))
    assert fields["classifier.0"] == Field((404, 404), (32, 32), (186, 186))  # fc6: 212 + 6 x 32
    assert fields["score_pool.pool3"] == Field((44, 44), (8, 8), (18, 18))  # pool3
    assert fields["upscore_to.pool4"].upsampled and fields["upscore"].upsampled
