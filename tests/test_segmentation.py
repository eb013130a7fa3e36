"""The segmentation model: networks and their options, losses, metrics, and SpaceNet runs end to end."""

import csv
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from callbacks.spacenet_tiles import SpaceNetTileEvaluation
from datamodules.spacenet import SpaceNetDataModule
from lightning_app.cli import cli_main
from lightning_app.errors import UserInputError
from lightning_app.sweep import main as sweep_main
from models.nets.linknet_selim import LinkNetSelim
from models.nets.smp_net import SMPNet
from models.segmentation import SegmentationModule
from models.segmentation_losses import build_loss
from models.segmentation_metrics import SoftIoU, pixel_metrics
from tests.spacenet_fixtures import make_spacenet3, make_spacenet6

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
BUILDING = (10, 10, 8, 8)  # make_spacenet6's building: row, col, height, width


def bright_buildings(size: int, seed: int) -> np.ndarray:
    """RGB pixels 20 everywhere and 220 on make_spacenet6's building, so a network can 'see' it."""
    pixels = np.full((3, size, size), 20, dtype=np.uint8)
    row, col, height, width = BUILDING
    pixels[:, row : row + height, col : col + width] = 220
    return pixels


class BrightPixels(nn.Module):
    """A 'perfect' network for bright_buildings tiles: logit +10 where band 0 is bright, -10 elsewhere."""

    def __init__(self, classes: int = 1) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x[:, :1] - 0.5)


def override_file(tmp_path: Path, data_dir: Path, trainer: dict, **data) -> Path:
    """A second --config that points a SpaceNet config at synthetic tiles and keeps the run small."""
    options = {"data_dir": str(data_dir), "cache_dir": str(tmp_path / "cache"), "crop_size": 64}
    override = {
        "trainer": trainer,
        "data": {"init_args": {**options, "batch_size": 2, "num_workers": 0, **data}},
    }
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(override))
    return path


SPACENET6_TRAINER = {
    "max_epochs": 1,
    "limit_train_batches": 2,
    "limit_val_batches": 2,
    "callbacks": [
        {
            "class_path": "callbacks.spacenet_tiles.SpaceNetTileEvaluation",
            "init_args": {"min_area": 20, "panels": 2},
        },
        {"class_path": "callbacks.spacenet_prediction_writer.SpaceNetPredictionWriter"},
        {
            "class_path": "callbacks.attribution.AttributionCallback",
            "init_args": {
                "methods": {"Saliency": {}, "IntegratedGradients": {"n_steps": 4}, "LayerGradCam": {}},
                "per_class": None,
                "size": 2,
                "every_n_epochs": 1,
                "sanity_checks": False,
            },
        },
        {
            "class_path": "callbacks.attribution.FaithfulnessCallback",
            "init_args": {
                "methods": {"Saliency": {}, "LayerGradCam": {}},
                "target": "building",
                "steps": 4,
                "size": 2,
                "every_n_epochs": 1,
            },
        },
    ],
}


def test_spacenet6_config_fits_and_predicts_full_tiles_on_their_georeference(tmp_path):
    aoi = make_spacenet6(tmp_path / "sn6", tiles=8, size=96)
    override = override_file(
        tmp_path,
        aoi,
        SPACENET6_TRAINER,
        split="random",
        val_fraction=0.25,
        test_fraction=0.25,
        eval_batch_size=2,
    )
    config = str(ROOT / "configs" / "spacenet6_unet_resnet18.yaml")
    fit = cli_main(["fit", "--config", config, "--config", str(override), *QUIET])
    run_dir = Path(fit.trainer.log_dir)
    checkpoint = fit.trainer.checkpoint_callback.best_model_path
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = events.Tags()
    for name in ("loss", "soft_iou", "iou", "dice", "precision", "recall", "building_f1"):
        assert f"Validation/{name}" in tags["scalars"]
    assert "Validation/tiles" in tags["images"]
    for method in ("Saliency", "IntegratedGradients", "LayerGradCam"):  # explaining building pixels
        assert f"attribution/{method}" in tags["images"]
    faithfulness = list(csv.DictReader((run_dir / "faithfulness.csv").open()))
    assert {(row["metric"], row["method"]) for row in faithfulness} == {
        (metric, method)
        for metric in ("deletion", "insertion", "relevance_mass", "pointing_game")
        for method in ("random", "Saliency", "LayerGradCam")
    }
    assert all(0 <= float(row["value"]) <= 1 for row in faithfulness)

    predict = cli_main(
        ["predict", "--config", config, "--config", str(override), "--ckpt_path", checkpoint, *QUIET]
    )
    test_ids = predict.datamodule.dataset("test").tile_ids
    folder = Path(predict.trainer.log_dir) / "predictions"
    assert sorted(p.stem for p in (folder / "probabilities").glob("*.tif")) == sorted(test_ids)
    for tile in predict.datamodule.tiles:
        if tile.pair.tile_id in test_ids:
            with rasterio.open(folder / "probabilities" / f"{tile.pair.tile_id}.tif") as written:
                assert written.crs == tile.info.crs and written.transform == tile.info.transform
                assert (written.height, written.width, written.count) == (96, 96, 1)
                values = written.read(1)
                assert values.min() >= 0.0 and values.max() <= 1.0
            assert (folder / "buildings" / f"{tile.pair.tile_id}.geojson").exists()
    lines = (folder / "proposals.csv").read_text().splitlines()
    assert lines[0] == "ImageId,BuildingId,PolygonWKT_Pix,Confidence"
    assert {line.split(",")[0] for line in lines[1:]} == set(test_ids)


def test_spacenet3_linknet_lca_config_allocates_the_loss_of_the_selim_linknet(tmp_path):
    data_dir = make_spacenet3(tmp_path / "sn3", tiles=6, size=64).parent
    lca = {"class_path": "callbacks.lca.LossChangeAllocation", "init_args": {"eval_size": 2, "chunk_size": 2}}
    visualisation = {
        "class_path": "callbacks.feature_vis.FeatureVisualization",
        "init_args": {
            "layers": ["net.encoders.2.0.conv2.0"], "channels": {"lca_top_helped": 2}, "steps": 4,
            "display_bands": [0, 1, 2], "per_class": None, "size": 1, "every_n_epochs": 0,
        },
    }  # fmt: skip
    callbacks = [lca, visualisation]
    trainer = {"max_steps": 3, "val_check_interval": 1.0, "limit_val_batches": 1, "callbacks": callbacks}
    path = override_file(tmp_path, data_dir, trainer, val_fraction=0.2, test_fraction=0.2)
    config = str(ROOT / "configs" / "spacenet3_linknet_lca.yaml")
    cli = cli_main(["fit", "--config", config, "--config", str(path), *QUIET])
    assert sum(p.numel() for p in cli.model.parameters()) == 21_485_089
    lca = next(c for c in cli.trainer.callbacks if type(c).__name__ == "LossChangeAllocation")
    assert lca.recorded == 3
    assert cli.datamodule.class_names == ["background", "road"]
    assert (Path(cli.trainer.log_dir) / "lca.h5").exists()
    feature_vis = cli.trainer.callbacks[
        [type(c).__name__ for c in cli.trainer.callbacks].index("FeatureVisualization")
    ]
    assert feature_vis.renderings["net.encoders.2.0.conv2.0"].images.shape == (2, 8, 64, 64)  # all 8 bands
    assert len(feature_vis.statistics.mean) == 8 and feature_vis.lca_epoch is not None


# ----- networks ------------------------------------------------------------------------------------
def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("batch_norm", "expected"), [(False, 21_485_089), (True, 21_503_521)])
def test_selim_linknet_has_macuras_parameter_count(batch_norm, expected):
    net = LinkNetSelim(in_channels=8, batch_norm=batch_norm)
    assert parameters(net) == expected
    assert net(torch.zeros(1, 8, 64, 64)).shape == (1, 1, 64, 64)


def unet_decoder_parameters(decoder_channels, classes=1, encoder=(64, 64, 128, 256, 512)) -> int:
    """U-Net decoder + head parameters with conv-BN-ReLU blocks (two 3x3 convolutions per block)."""
    features = list(encoder)[::-1]
    inputs, skips = [features[0], *decoder_channels[:-1]], [*features[1:], 0]
    total = 0
    for c_in, skip, out in zip(inputs, skips, decoder_channels, strict=True):
        total += (c_in + skip) * out * 9 + 2 * out + out * out * 9 + 2 * out
    return total + decoder_channels[-1] * classes * 9 + classes


@pytest.mark.parametrize("channels", [[256, 128, 64, 32, 16], [128, 64, 32, 16, 8]])
def test_decoder_channels_set_the_unet_decoder(channels):
    net = SMPNet(decoder_channels=channels)
    assert parameters(net) - parameters(net.model.encoder) == unet_decoder_parameters(channels)


def test_decoder_norm_and_upsampling_options_change_the_model_as_configured():
    base = parameters(SMPNet())
    # no norm: each of the 10 decoder convolutions loses its BN (2 per channel) and gains a bias
    assert parameters(SMPNet(decoder_norm="none")) == base - (256 + 128 + 64 + 32 + 16) * 2
    # transposed block: 4x4 transposed conv (in x out x 16) and one 3x3 conv instead of two
    inputs, outputs = [512, 256, 128, 64, 32], [256, 128, 64, 32, 16]
    delta = sum(7 * c_in * out for c_in, out in zip(inputs, outputs, strict=True))
    transposed = SMPNet(upsampling="transposed")
    assert parameters(transposed) == base + delta
    assert transposed(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    group = SMPNet(decoder_norm="groupnorm", norm_groups=4)
    norms = [m for m in group.model.decoder.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 10 and {m.num_groups for m in norms} == {4}
    assert not any(isinstance(m, nn.BatchNorm2d) for m in group.model.decoder.modules())
    bilinear = SMPNet(upsampling="bilinear")
    assert {b.interpolation_mode for b in bilinear.model.decoder.blocks} == {"bilinear"}


def test_decoder_dropout_sits_between_norm_and_relu():
    net = SMPNet(decoder_dropout=0.3)
    layer = net.model.decoder.blocks[0].conv1
    assert [type(m).__name__ for m in layer] == ["Conv2d", "BatchNorm2d", "Dropout", "ReLU"]
    assert layer[2].p == 0.3
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 10
    x = torch.randn(2, 3, 64, 64)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


def test_encoder_activation_swaps_the_residual_blocks_only():
    relu, elu = SMPNet(), SMPNet(encoder_activation="elu")
    elu.load_state_dict(relu.state_dict())
    blocks = [m for m in elu.model.encoder.modules() if hasattr(m, "conv2") and hasattr(m, "relu")]
    assert len(blocks) == 8 and all(isinstance(b.relu, nn.ELU) for b in blocks)
    assert isinstance(elu.model.encoder.relu, nn.ReLU)  # the stem keeps ReLU
    x = torch.randn(1, 3, 64, 64)
    relu.eval(), elu.eval()
    assert not torch.allclose(relu(x), elu(x))


@pytest.mark.parametrize("arch", ["UnetPlusPlus", "Linknet", "FPN", "PSPNet", "DeepLabV3Plus"])
def test_other_architectures_take_any_band_count(arch):
    net = SMPNet(arch=arch, in_channels=4, classes=3)
    assert net(torch.randn(2, 4, 64, 64)).shape == (2, 3, 64, 64)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"arch": "FPN", "upsampling": "transposed"}, "available for arch 'Unet' only"),
        ({"arch": "PSPNet", "decoder_channels": [64]}, "arch PSPNet has no decoder_channels option"),
        ({"decoder_norm": "groupnorm", "norm_groups": 7}, "cannot be split into norm_groups=7"),
        ({"arch": "Segnet"}, "is not an SMP architecture"),
        ({"encoder_activation": "swish"}, "encoder_activation 'swish' is not one of"),
        ({"decoder_dropout": 1.0}, "must be in \\[0, 1\\)"),
    ],
)
def test_options_a_network_cannot_take_are_errors(options, message):
    with pytest.raises(UserInputError, match=message):
        SMPNet(**options)


# ----- losses --------------------------------------------------------------------------------------
def toy_problem(classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[:, 4:10, 4:10] = 1
    if classes > 2:
        target[:, 10:14, 2:6] = 2
    target[1, :2] = 255
    return torch.zeros(2, 1 if classes == 2 else classes, 16, 16), target


@pytest.mark.parametrize(
    ("classes", "name"),
    [(2, n) for n in ("bce", "dice", "jaccard", "focal", "lovasz", "tversky", "fbeta")]
    + [(3, n) for n in ("ce", "dice", "jaccard", "focal", "lovasz", "fbeta")],
)
def test_each_loss_is_finite_decreases_and_ignores_ignored_pixels(classes, name):
    start, target = toy_problem(classes)
    loss = build_loss([{"name": name}], classes == 2, 255)
    other = start.clone()
    other[1, :, :2] = 5.0  # only ignored pixels change
    assert torch.isclose(loss(start, target), loss(other, target))
    logits = start.clone().requires_grad_()
    optimizer = torch.optim.Adam([logits], lr=0.1)
    values = []
    for _ in range(30):
        optimizer.zero_grad()
        value = loss(logits, target)
        value.backward()
        optimizer.step()
        values.append(float(value.detach()))
    assert all(np.isfinite(values)) and values[-1] < 0.7 * values[0]


def test_losses_follow_the_reports_keras_formulas():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 8, 8) > 0.6).long()
    p, y = logits.sigmoid()[:, 0], target.float()
    tp, fp, fn = (p * y).sum(), (p * (1 - y)).sum(), ((1 - p) * y).sum()
    jaccard = build_loss([{"name": "jaccard", "smooth": 1e-5}], True, 255)
    assert torch.isclose(jaccard(logits, target), 1 - (tp + 1e-5) / (tp + fp + fn + 1e-5))
    beta = 2.0
    fbeta = build_loss([{"name": "fbeta", "beta": beta}], True, 255)
    keras = ((1 + beta**2) * tp) / ((1 + beta**2) * tp + beta**2 * fn + fp)
    assert torch.isclose(fbeta(logits, target), 1 - keras, atol=1e-6)
    focal = build_loss([{"name": "focal", "alpha": 0.75, "gamma": 0.25}], True, 255)
    keras_focal = -(y * 0.75 * (1 - p) ** 0.25 * p.log() + (1 - y) * 0.25 * p**0.25 * (1 - p).log()).mean()
    assert torch.isclose(focal(logits, target), keras_focal, atol=1e-6)
    target[0, 0] = 255
    valid = target != 255
    bce = build_loss([{"name": "bce"}], True, 255)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0][valid], y[valid])
    assert torch.isclose(bce(logits, target), expected)
    mixed = build_loss([{"name": "bce", "weight": 0.5}, {"name": "dice", "weight": 0.5}], True, 255)
    dice = build_loss([{"name": "dice"}], True, 255)
    assert torch.isclose(mixed(logits, target), 0.5 * bce(logits, target) + 0.5 * dice(logits, target))
    assert set(mixed.last_terms) == {"bce", "dice"}


@pytest.mark.parametrize(
    ("spec", "binary", "message"),
    [
        ([{"name": "hinge"}], True, "loss term 'hinge' is not one of bce, ce, fbeta"),
        ([{"weight": 1}], True, r"model.loss\[0\] has no 'name'"),
        ([{"name": "dice", "smoth": 1}], True, r"model.loss\[0\] \(dice\): .*smoth"),
        ([{"name": "bce"}], False, "use 'ce' for more classes"),
        ([], True, "model.loss is empty"),
    ],
)
def test_bad_loss_entries_are_named(spec, binary, message):
    with pytest.raises(UserInputError, match=message):
        build_loss(spec, binary, 255)


# ----- metrics -------------------------------------------------------------------------------------
def test_pixel_metrics_on_hand_made_masks():
    target = torch.tensor([[[1, 1, 0, 0], [1, 1, 0, 255]]])
    scores = torch.tensor([[[0.9, 0.6, 0.7, 0.1], [0.2, 0.8, 0.4, 0.9]]])
    metrics = pixel_metrics(2, 0.5, 255)
    values = {k: float(v) for k, v in metrics(scores, target).items()}
    # at 0.5, of the 7 labelled pixels: TP 3, FP 1 (0.7), FN 1 (0.2); the ignored 0.9 counts nowhere
    assert values["iou"] == pytest.approx(3 / 5)
    assert values["dice"] == pytest.approx(6 / 8)
    assert values["precision"] == pytest.approx(3 / 4) and values["recall"] == pytest.approx(3 / 4)
    intersection = 0.9 + 0.6 + 0.2 + 0.8
    union = (0.9 + 0.6 + 0.7 + 0.1 + 0.2 + 0.8 + 0.4) + 4 - intersection
    assert values["soft_iou"] == pytest.approx((intersection + 1e-5) / (union + 1e-5), rel=1e-6)


def test_soft_iou_is_averaged_over_batches_as_keras_does():
    metric = SoftIoU()
    metric.update(torch.ones(1, 2, 2), torch.ones(1, 2, 2, dtype=torch.long))  # batch IoU 1
    metric.update(torch.ones(1, 2, 2), torch.tensor([[[1, 0], [0, 0]]]))  # batch IoU 1/4
    assert float(metric.compute()) == pytest.approx((1 + (1 + 1e-5) / (4 + 1e-5)) / 2, rel=1e-6)


def test_three_class_metrics_are_macro_averages():
    target = torch.tensor([[[0, 1], [2, 2]]])
    scores = torch.nn.functional.one_hot(torch.tensor([[[0, 1], [2, 1]]]), 3).permute(0, 3, 1, 2).float()
    values = pixel_metrics(3, 0.5, 255)(scores, target)
    # per class IoU: 1, 1/2, 1/2
    assert float(values["iou"]) == pytest.approx(2 / 3)


def spacenet_validation(tmp_path, scale: float, size: int = 64, panels: int = 0) -> dict:
    aoi = make_spacenet6(tmp_path / "sn6", tiles=6, size=size, pixels=bright_buildings)
    data = SpaceNetDataModule(aoi, cache_dir=tmp_path / "cache", crop_size=64, val_fraction=0.34)
    net = BrightPixels()
    net.scale.data.fill_(scale)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=pl.loggers.TensorBoardLogger(tmp_path, name="run") if panels else False,
        enable_progress_bar=False,
        callbacks=[SpaceNetTileEvaluation(min_area=20, panels=panels)],
    )
    return trainer.validate(SegmentationModule(net), datamodule=data, verbose=False)[0]


@pytest.mark.parametrize(("scale", "f1", "size", "panels"), [(20.0, 1.0, 64, 0), (-20.0, 0.0, 64, 0),
                                                              (20.0, 1.0, 90, 2)])  # fmt: skip
def test_building_f1_on_whole_validation_tiles(tmp_path, scale, f1, size, panels):
    """Also on tiles padded for the network (90 px -> 96), drawing panels (it failed on the padding)."""
    results = spacenet_validation(tmp_path, scale, size, panels)
    assert results["val/building_f1"] == f1
    assert results["val/iou"] == pytest.approx(f1)
    if f1 == 0:  # everything but the building is one proposal: a false positive, the building missed
        assert results["val/building_precision"] == 0 and results["val/building_recall"] == 0


def test_segmentation_module_reports_mismatched_outputs(tmp_path):
    module = SegmentationModule(SMPNet(classes=3), num_classes=2)
    with pytest.raises(UserInputError, match=r"needs \(N, 1, H, W\) logits: set the network's classes to 1"):
        module(torch.zeros(1, 3, 64, 64))
    aoi = make_spacenet6(tmp_path / "sn6", tiles=4, size=64)
    data = SpaceNetDataModule(aoi, cache_dir=tmp_path / "cache", crop_size=64, ignore_index=99)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    with pytest.raises(
        UserInputError, match="model.ignore_index=255 but the data marks ignored pixels with 99"
    ):
        trainer.validate(SegmentationModule(SMPNet()), datamodule=data)
    data = SpaceNetDataModule(aoi, cache_dir=tmp_path / "cache", crop_size=64, mask_classes="three_class")
    with pytest.raises(UserInputError, match="model.num_classes=2 but the data has 3 classes"):
        trainer.validate(SegmentationModule(SMPNet()), datamodule=data)


@pytest.mark.parametrize(
    ("config", "net", "callbacks"),
    [
        (
            "spacenet6_unet_resnet18",
            {"arch": "Unet", "encoder_name": "resnet18", "decoder_norm": "groupnorm", "norm_groups": 8},
            {
                "SpaceNetTileEvaluation",
                "SpaceNetPredictionWriter",
                "AttributionCallback",
                "FaithfulnessCallback",
            },
        ),
        ("spacenet6_sar", {"in_channels": 4}, {"SpaceNetTileEvaluation", "SpaceNetPredictionWriter"}),
        (
            "spacenet3_linknet_lca",
            {"in_channels": 8, "batch_norm": False},
            {"LossChangeAllocation", "SpaceNetRoadEvaluation", "SpaceNetPredictionWriter"},
        ),
        (
            "spacenet3_unet_roads",
            {"arch": "Unet", "encoder_name": "resnet34", "in_channels": 12},
            {"SpaceNetRoadEvaluation", "SpaceNetPredictionWriter"},
        ),
    ],
)
def test_spacenet_configs_build_what_they_declare(config, net, callbacks):
    cli = cli_main(["--config", str(ROOT / "configs" / f"{config}.yaml")], run=False)
    arguments = cli.config["model"]["init_args"]["net"]["init_args"]
    assert {key: arguments[key] for key in net} == net
    assert callbacks <= {type(c).__name__ for c in cli.trainer.callbacks}
    assert isinstance(cli.model, SegmentationModule) and cli.model.num_classes == 2


# ----- Lim et al.'s sweep ----------------------------------------------------------------------------
SWEEP = ROOT / "configs" / "spacenet6_sweep.yaml"


def test_sweep_lists_the_reports_48_runs_and_writes_their_overrides(tmp_path, capsys):
    sweep_main([str(SWEEP), "--dry-run", "--", "--trainer.max_epochs=1"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 48 and lines[0].startswith("[1/48] 01_backbone/resnet18: ")
    assert lines[-1].endswith(
        "--trainer.max_epochs=1 --config runs/spacenet6_sweep/overrides/"
        "11_augmentation_resnet50/augment_true.yaml"
    )
    assert len(list((tmp_path / "runs" / "spacenet6_sweep" / "overrides").glob("*/*.yaml"))) == 48
    with pytest.raises(SystemExit, match=r"--stage \['12_more'\] not in"):
        sweep_main([str(SWEEP), "--dry-run", "--stage", "12_more"])


@pytest.mark.parametrize(
    ("stage", "variant", "check"),
    [
        ("01_backbone", "resnet34", lambda m: m.net.model.encoder.layer1[2] is not None),
        (
            "02_loss",
            "focal_gamma2",
            lambda m: {"alpha": 0.25, "gamma": 2}.items() <= m.criterion.focal_loss_fn.keywords.items(),
        ),
        ("03_optimizer", "rmsprop", lambda m: m.configure_optimizers().defaults["alpha"] == 0.9),
        ("04_learning_rate", "lr1e-4_report10e-5", lambda m: m.configure_optimizers().defaults["lr"] == 1e-4),
        (
            "05_upsampling",
            "transpose",
            lambda m: type(m.net.model.decoder.blocks[0]).__name__ == "TransposedUnetBlock",
        ),
        (
            "06_decoder_batchnorm",
            "batchnorm_false",
            lambda m: not any(isinstance(x, nn.BatchNorm2d) for x in m.net.model.decoder.modules()),
        ),
        ("07_decoder_dropout", "drop0.3", lambda m: m.net.model.decoder.blocks[0].conv1[2].p == 0.3),
        ("08_decoder_norm", "groupnorm4", lambda m: m.net.model.decoder.blocks[0].conv1[1].num_groups == 4),
        (
            "09_encoder_activation",
            "selu_scratch",
            lambda m: isinstance(m.net.model.encoder.layer1[0].relu, nn.SELU),
        ),
    ],
)
def test_sweep_variants_build_the_models_they_name(tmp_path, capsys, stage, variant, check):
    sweep_main([str(SWEEP), "--dry-run", "--stage", stage])
    override = tmp_path / "runs" / "spacenet6_sweep" / "overrides" / stage / f"{variant}.yaml"
    cli = cli_main(
        ["--config", str(ROOT / "configs" / "spacenet6_unet_resnet18.yaml"), "--config", str(override)],
        run=False,
    )
    assert check(cli.model)
    assert cli.trainer.logger.log_dir.endswith(f"spacenet6_sweep/{stage}/{variant}/version_0")
