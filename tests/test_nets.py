import math
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_app.cli import cli_main
from models.nets.allcnn import AllCNN
from models.nets.fc import FullyConnected
from models.nets.lenet_keras import LeNetKeras
from models.nets.resnet_cifar import ResNetCIFAR
from models.nets.vgg4 import VGG4

CONFIGS = Path(__file__).parents[1] / "configs"


def trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("config", "parameters", "input_shape"),
    [
        ("mnist_fc.yaml", 84_060, (1, 28, 28)),
        ("mnist_lenet.yaml", 808_970, (1, 28, 28)),
        ("cifar10_allcnn.yaml", 1_371_658, (3, 32, 32)),
        ("cifar10_resnet20.yaml", 273_066, (3, 32, 32)),
        ("mnist_lenet_keras.yaml", 113_386, (1, 28, 28)),
        ("cifar10_vgg4.yaml", 1_080_470, (3, 32, 32)),
        ("quickstart.yaml", 84_060, (1, 28, 28)),
    ],
)
def test_each_config_builds_its_paper_network_with_the_exact_parameter_count(config, parameters, input_shape):
    cli = cli_main(["--config", str(CONFIGS / config)], run=False)
    assert trainable_parameters(cli.model) == parameters
    assert cli.model(torch.rand(2, *input_shape)).shape == (2, 10)


def test_he_normal_init_is_truncated_with_variance_two_over_fan_in():
    torch.manual_seed(0)
    weight = FullyConnected().fc1.weight.detach()
    target_std = math.sqrt(2 / 784)
    assert weight.std().item() == pytest.approx(target_std, rel=0.03)
    assert weight.abs().max().item() <= 2 * target_std / 0.87962566103423978 + 1e-6
    assert torch.count_nonzero(FullyConnected().fc1.bias) == 0


def test_lees_networks_use_keras_glorot_uniform():
    torch.manual_seed(0)
    weight = VGG4().fc1.weight.detach()
    fan_in, fan_out = 8192, 100
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert weight.abs().max().item() <= bound
    assert weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)


def test_keras_lenet_spatial_sizes_are_26_13_11_5():
    net = LeNetKeras()
    sizes = []
    for name in ("conv1", "pool1", "conv2", "pool2"):
        getattr(net, name).register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    net(torch.rand(1, 1, 28, 28))
    assert sizes == [26, 13, 11, 5]


def test_resnet20_downsamples_with_1x1_shortcuts_in_stages_2_and_3():
    net = ResNetCIFAR()
    shortcuts = [name for name, m in net.named_modules() if name.endswith("shortcut")]
    convs = [name for name in shortcuts if isinstance(net.get_submodule(name), nn.Conv2d)]
    assert convs == ["stage2.0.shortcut", "stage3.0.shortcut"]
    assert net.stage3[0].shortcut.stride == (2, 2) and net.stage2[0].shortcut.kernel_size == (1, 1)
    assert all(conv.bias is not None for conv in net.modules() if isinstance(conv, nn.Conv2d))


@pytest.mark.parametrize("net_class", [AllCNN, ResNetCIFAR])
def test_bn_momentum_reaches_every_batch_norm(net_class):
    net = net_class(bn_momentum=1.0)
    momenta = {m.momentum for m in net.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {1.0}
