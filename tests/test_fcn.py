"""FCN-32s/16s/8s on VGG-16 and torchvision's FCN-ResNet-50, the multi-class segmentation metrics, the
synthetic shapes data and configs/fcn8s_synthetic.yaml."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from callbacks.contracts import VisualisableDataModule
from datamodules.synthetic_shapes import SyntheticShapesDataModule, shape_mask
from lightning_app.errors import UserInputError
from models.nets.fcn import VGG16FCN, TorchvisionFCN, bilinear_upsampling
from models.segmentation_metrics import ClassIoU, class_iou_metrics, pixel_metrics

VGG16_CLASSIFIER = 138_357_544  # torchvision's vgg16, 1,000 classes
VGG16_HEAD = 4096 * 1000 + 1000  # its last Linear, which an FCN drops
SCORES_21 = 4096 * 21 + 21  # score_fr, 21 classes (PASCAL VOC)
UPSCORE = {32: 21 * 21 * 64 * 64, 16: 21 * 21 * 32 * 32, 8: 21 * 21 * 16 * 16}  # bias-free, kernel 2 x factor
UPSCORE2 = 21 * 21 * 4 * 4
SCORE_POOL4, SCORE_POOL3 = 512 * 21 + 21, 256 * 21 + 21


def count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def test_vgg16_fcn_parameter_counts_derived_from_torchvision_vgg16():
    """VGG-16's convolutions and fc6/fc7 (as convolutions) are VGG-16 less its 1,000-class layer; each
    variant adds its score layers and bias-free upsamplings: FCN-32s 136,152,917 and FCN-8s 134,489,759
    parameters for 21 classes."""
    assert count(torchvision.models.vgg16()) == VGG16_CLASSIFIER
    body = VGG16_CLASSIFIER - VGG16_HEAD + SCORES_21
    expected = {
        "32s": body + UPSCORE[32],
        "16s": body + SCORE_POOL4 + UPSCORE2 + UPSCORE[16],
        "8s": body + SCORE_POOL4 + SCORE_POOL3 + 2 * UPSCORE2 + UPSCORE[8],
    }
    assert expected["32s"] == 136_152_917 and expected["8s"] == 134_489_759
    for variant, parameters in expected.items():
        assert count(VGG16FCN(variant, classes=21)) == parameters, variant


def test_torchvision_fcn_resnet50_parameter_count_matches_torchvision_metadata():
    """torchvision lists 35,322,218 parameters with the auxiliary head (FCNHead(1024): a 3x3 conv to 256,
    batch norm, a 1x1 conv to 21), which ours leaves out."""
    listed = torchvision.models.segmentation.FCN_ResNet50_Weights.DEFAULT.meta["num_params"]
    auxiliary = 1024 * 256 * 9 + 2 * 256 + 256 * 21 + 21
    assert count(TorchvisionFCN(classes=21)) == listed - auxiliary == 32_957_013


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_fcn_outputs_the_input_size_for_any_size(variant):
    net = VGG16FCN(variant, classes=3).eval()
    for size in ((64, 64), (100, 137), (33, 47)):
        assert net(torch.randn(1, 3, *size)).shape == (1, 3, *size)
    assert all(not layer.weight.any() for layer in net.score_pool.values())  # skips start at zero


def test_bilinear_upsampling_equals_bilinear_interpolation_inside_the_map():
    """The transposed convolution's initial weights interpolate like F.interpolate (half-pixel centres);
    the outer ``factor`` / 2 pixels differ only because interpolate repeats the border."""
    scores = torch.randn(1, 3, 6, 5)
    for factor in (2, 8, 32):
        upsampled = bilinear_upsampling(3, factor)(scores)
        reference = F.interpolate(scores, scale_factor=factor, mode="bilinear", align_corners=False)
        assert upsampled.shape == reference.shape
        inner = slice(factor // 2, -(factor // 2))
        assert torch.allclose(upsampled[..., inner, inner], reference[..., inner, inner], atol=1e-5)


def test_vgg16_weights_become_the_fcn_backbone_and_fc6_fc7_convolutions(tmp_path):
    """On a 224 px image, the convolutionalised fc7 at the centre of its 7 x 7 map equals VGG-16's fc7
    (classifier[:5]) output on the same image: the same weights, reshaped."""
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16().eval()
    torch.save(vgg.state_dict(), tmp_path / "vgg16.pth")
    fcn = VGG16FCN("8s", classes=5, backbone_weights_path=str(tmp_path / "vgg16.pth")).eval()
    assert torch.equal(fcn.features[28].weight, vgg.features[28].weight)
    image = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        fc7 = vgg.classifier[:5](torch.flatten(vgg.avgpool(vgg.features(image)), 1))
        fcn_fc7 = fcn.classifier(fcn.features(image))
    assert fcn_fc7.shape == (1, 4096, 7, 7)
    assert torch.allclose(fcn_fc7[0, :, 3, 3], fc7[0], rtol=1e-4, atol=1e-5)


def test_fcn_weight_files_that_do_not_fit_are_refused(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(
        UserInputError, match=r"backbone_weights_path=.*resnet18.pth .*not a torchvision VGG-16"
    ):
        VGG16FCN("32s", classes=2, backbone_weights_path=str(tmp_path / "resnet18.pth"))
    with pytest.raises(UserInputError, match=r"backbone_weights_path=.*missing.pth: no such file"):
        VGG16FCN("32s", classes=2, backbone_weights_path=str(tmp_path / "missing.pth"))
    with pytest.raises(UserInputError, match="variant='4s': choose 32s, 16s or 8s"):
        VGG16FCN("4s")
    with pytest.raises(UserInputError, match="not both"):
        TorchvisionFCN(2, weights_path="a.pth", backbone_weights_path="b.pth")


def test_torchvision_fcn_loads_local_weights_and_replaces_the_last_layer(tmp_path, caplog):
    torch.manual_seed(0)
    full = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, aux_loss=True)
    torch.save(full.state_dict(), tmp_path / "fcn.pth")
    with caplog.at_level("INFO"):
        net = TorchvisionFCN(classes=4, weights_path=str(tmp_path / "fcn.pth"))
    assert "classifier.4 replaced, 21 -> 4 classes" in caplog.text
    assert torch.equal(net.model.backbone.layer4[2].conv3.weight, full.backbone.layer4[2].conv3.weight)
    assert torch.equal(net.model.classifier[0].weight, full.classifier[0].weight)
    assert net.model.classifier[4].out_channels == 4
    resnet = torchvision.models.resnet50()
    torch.save(resnet.state_dict(), tmp_path / "resnet50.pth")
    net = TorchvisionFCN(classes=3, backbone_weights_path=str(tmp_path / "resnet50.pth"))
    assert torch.equal(net.model.backbone.conv1.weight, resnet.conv1.weight)
    assert net(torch.randn(1, 3, 40, 52)).shape == (1, 3, 40, 52)


def confusion(predicted: np.ndarray, truth: np.ndarray, classes: int) -> np.ndarray:
    return np.bincount(classes * truth + predicted, minlength=classes * classes).reshape(classes, classes)


def test_multiclass_metrics_equal_the_confusion_matrix_formulas():
    """Pixel accuracy (trace / total), mean accuracy (of each present class's recall), each class's IoU
    (tp / (row + column - tp)) and their mean, over valid pixels; class 3 never occurs and is not
    averaged; ignored pixels count nowhere."""
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(4, 4, 8, 8, generator=generator).softmax(dim=1)
    target = torch.randint(0, 3, (4, 8, 8), generator=generator)
    target[:, 0] = 255
    metrics = pixel_metrics(4, 0.5, 255)
    metrics.add_metrics(class_iou_metrics(["background", "a", "b", "c d"], 255))
    metrics.update(scores[:2], target[:2])
    metrics.update(scores[2:], target[2:])
    values = {key: float(value) for key, value in metrics.compute().items()}
    valid = (target != 255).numpy()
    matrix = confusion(scores.argmax(1).numpy()[valid], target.numpy()[valid], 4)
    tp = np.diag(matrix)
    present = matrix.sum(1) > 0
    union = matrix.sum(0) + matrix.sum(1) - tp
    iou = tp / np.maximum(union, 1)
    assert values["pixel_accuracy"] == pytest.approx(tp.sum() / matrix.sum())
    assert values["mean_accuracy"] == pytest.approx((tp / matrix.sum(1))[present].mean())
    assert values["iou"] == pytest.approx(iou[union > 0].mean())
    for index, key in enumerate(["iou_background", "iou_a", "iou_b"]):
        assert values[key] == pytest.approx(iou[index])
    assert matrix[:, 3].sum() > 0 and values["iou_c_d"] == 0.0  # predicted, never true: IoU 0
    assert len(metrics.compute_groups) < len(metrics)  # the per-class IoUs share one confusion matrix
    absent = ClassIoU(2, 3, 255)  # class 2 neither true nor predicted: undefined, not 0
    absent.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 1, 0]]))
    assert torch.isnan(absent.compute())


def test_synthetic_shapes_are_seeded_per_split_and_masks_match_the_shapes():
    data = SyntheticShapesDataModule(image_size=32, train_size=6, val_size=4, test_size=3, seed=3)
    assert isinstance(data, VisualisableDataModule) and data.num_classes == 4
    data.setup()
    other = SyntheticShapesDataModule(image_size=32, train_size=9, val_size=4, test_size=3, seed=3)
    other.setup()
    image, mask = data.dataset("val")[1]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32) and mask.dtype == torch.long
    assert float(image.min()) >= 0 and float(image.max()) <= 1
    assert torch.equal(other.dataset("val")[1][1], mask)  # train_size does not change val
    assert set(torch.cat([m.flatten() for _, m in data.dataset("train")]).tolist()) <= {0, 1, 2, 3}
    rows, cols = torch.meshgrid(torch.arange(101), torch.arange(101), indexing="ij")
    centre = torch.tensor([50.0, 50.0])
    areas = [int(shape_mask(kind, rows, cols, centre, 40).sum()) for kind in (1, 2, 3)]
    assert areas[0] == pytest.approx(np.pi * 40**2, rel=0.01)  # circle
    assert areas[1] == 81 * 81  # square of side 2 r + 1 pixels
    assert areas[2] == pytest.approx(0.5 * 80 * 80, rel=0.03)  # triangle: height 2 r, base 2 r
    subset = data.evaluation_subset("test", size=2, seed=1)
    assert len(subset) == 2 and subset.source == "synthetic shapes, test, seed 3"
    with pytest.raises(UserInputError, match="per_class subsets are for classification"):
        data.evaluation_subset("val", per_class=1)
    with pytest.raises(UserInputError, match="data.image_size=8"):
        SyntheticShapesDataModule(image_size=8)


def test_fcn8s_config_logs_the_segmentation_metrics_per_class_and_explains(tmp_path):
    """configs/fcn8s_synthetic.yaml on 32 px shapes: val/iou (the mean IoU) equals the mean of the
    per-class IoUs computed again from the checkpoint's predictions; attribution and activation figures."""
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lightning_app.cli import cli_main

    override = {
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "enable_progress_bar": False},
        "data": {"init_args": {"image_size": 32, "train_size": 8, "val_size": 6, "batch_size": 4}},
    }  # fmt: skip
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(override))
    config = str(Path(__file__).resolve().parents[1] / "configs" / "fcn8s_synthetic.yaml")
    fit = cli_main(["fit", "--config", config, "--config", str(tmp_path / "override.yaml")])
    logged = {key: float(value) for key, value in fit.trainer.callback_metrics.items()}
    names = ["background", "circle", "square", "triangle"]
    assert isinstance(fit.model.net, VGG16FCN) and fit.model.net.variant == "8s"
    assert count(fit.model.net) == VGG16_CLASSIFIER - VGG16_HEAD + 4 * (4096 + 512 + 256 + 3) + 4 * 4 * (
        16 + 16 + 256
    )
    model, data = fit.model.eval(), fit.datamodule
    images, masks = zip(*data.dataset("val"), strict=True)
    with torch.no_grad():
        predicted = model(torch.stack(images)).argmax(1).numpy()
    matrix = confusion(predicted.ravel(), torch.stack(masks).numpy().ravel(), 4)
    tp = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - tp
    for index, name in enumerate(names):
        expected = tp[index] / union[index] if union[index] else float("nan")
        assert logged[f"val/iou_{name}"] == pytest.approx(expected, abs=1e-6, nan_ok=True)
    assert logged["val/pixel_accuracy"] == pytest.approx(tp.sum() / matrix.sum(), abs=1e-6)
    events = EventAccumulator(fit.trainer.log_dir, size_guidance={"images": 0})
    events.Reload()
    images = set(events.Tags()["images"])
    assert {"attribution/Saliency", "attribution/LayerGradCam"} <= images
    assert any(tag.startswith("activations/net.features.28") for tag in images)
