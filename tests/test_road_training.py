"""Roads in training and prediction: APLS on whole validation tiles, the prediction writer's road output
read back by the road evaluator, and the SpaceNet 3 data options (KFold, city channels)."""

import csv
import json
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from callbacks.spacenet_prediction_writer import SpaceNetPredictionWriter
from callbacks.spacenet_roads import SpaceNetRoadEvaluation
from datamodules.spacenet import SpaceNetDataModule
from lightning_app.errors import UserInputError
from lightning_app.evaluate import main as evaluate
from models.segmentation import SegmentationModule
from tests.spacenet_fixtures import make_spacenet3, make_spacenet6

SIZE = 64
ROAD_ROWS = slice(28, 36)  # make_spacenet3's road: row 32, buffered 2 m (4 px) each side


def bright_road(size: int, seed: int) -> np.ndarray:
    """11-bit pixels 20 everywhere and 2000 on the road, so a network can 'see' it."""
    pixels = np.full((8, size, size), 20, dtype=np.uint16)
    pixels[:, ROAD_ROWS] = 2000
    return pixels


class BrightBand(nn.Module):
    """A 'perfect' road network for bright_road tiles: logit +scale where band 0 is bright."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x[:, :1] - 0.5)


def roads_data(tmp_path: Path, **options) -> SpaceNetDataModule:
    aoi = make_spacenet3(tmp_path / "sn3", tiles=6, size=SIZE, pixels=bright_road, overhang=0.0)
    settings = {"cache_dir": tmp_path / "cache", "crop_size": SIZE, "max_value": 2047, "val_fraction": 0.34,
                "test_fraction": 0.34, **options}  # fmt: skip
    return SpaceNetDataModule(aoi, **settings)


def trainer(tmp_path: Path, callbacks: list, logger=False) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=logger, enable_progress_bar=False, callbacks=callbacks,
                      default_root_dir=tmp_path)  # fmt: skip


@pytest.mark.parametrize(("scale", "low", "high"), [(20.0, 0.8, 1.0), (-20.0, 0.0, 0.0)])
def test_apls_on_whole_validation_tiles(tmp_path, scale, low, high):
    """The perfect network's graph runs the tile's width less the skeleton's shortened ends (each within
    the 4 m snap): APLS above 0.8. The inverted one marks everything but the road, whose skeletons lie
    8 m off: APLS 0."""
    logger = pl.loggers.TensorBoardLogger(tmp_path, name="run")
    run = trainer(tmp_path, [SpaceNetRoadEvaluation(panels=1)], logger)
    results = run.validate(
        SegmentationModule(BrightBand(scale)), datamodule=roads_data(tmp_path), verbose=False
    )
    assert low <= results[0]["val/apls"] <= high
    assert low <= results[0]["val/apls_truth_onto_proposal"] <= high
    events = EventAccumulator(str(Path(run.log_dir)))
    events.Reload()
    assert "Validation/road_graphs" in events.Tags()["images"]


def test_writer_road_output_scores_with_the_evaluator(tmp_path, capsys):
    data = roads_data(tmp_path)
    out = tmp_path / "predictions"
    run = trainer(tmp_path, [SpaceNetPredictionWriter(output_dir=str(out))])
    run.predict(SegmentationModule(BrightBand(20.0)), datamodule=data, return_predictions=False)
    test_ids = data.dataset("test").tile_ids
    assert sorted(p.stem for p in (out / "graphs").glob("*.geojson")) == sorted(test_ids)
    tile = next(t for t in data.tiles if t.pair.tile_id == test_ids[0])
    with rasterio.open(out / "masks" / f"{test_ids[0]}.tif") as mask:
        assert mask.crs == tile.info.crs and mask.transform == tile.info.transform
        values = mask.read(1)
        assert set(np.unique(values)) == {0, 1} and values[ROAD_ROWS].mean() > 0.95 and values[:20].max() == 0
    graph = json.loads((out / "graphs" / f"{test_ids[0]}.geojson").read_text())
    (feature,) = graph["features"]
    assert feature["geometry"]["type"] == "LineString" and 25 < feature["properties"]["length_m"] <= 32
    assert graph["crs"]["properties"]["name"] == "EPSG:32631"
    with (out / "proposals.csv").open() as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["ImageId", "WKT_Pix"] and {row[0] for row in rows[1:]} == set(test_ids)
    truth = str(data.data_dir / "geojson_roads")
    for proposal in (
        [str(out / "proposals.csv"), "--images", str(data.data_dir / "PS-MS")],
        [str(out / "graphs")],
    ):
        evaluate(["spacenet-roads", "--truth", truth, "--proposal", *proposal, "--json"])
        results = {row["Name"]: row["APLS"] for row in json.loads(capsys.readouterr().out)["results"]}
        assert all(0.9 < results[tile_id] < 1 for tile_id in test_ids)  # 1.3 and 1.8 m short at the ends


def test_road_evaluation_refuses_building_data(tmp_path):
    data = SpaceNetDataModule(make_spacenet6(tmp_path / "sn6"), cache_dir=tmp_path / "cache", crop_size=64)
    with pytest.raises(
        UserInputError, match="SpaceNetRoadEvaluation scores roads; .*AOI_11_Rotterdam holds buildings"
    ):
        trainer(tmp_path, [SpaceNetRoadEvaluation()]).validate(
            SegmentationModule(BrightBand(1.0)), datamodule=data
        )


def test_kfold_split_keeps_test_and_rotates_val_through_the_folds(tmp_path):
    from sklearn.model_selection import KFold

    aoi = make_spacenet3(tmp_path / "sn3", tiles=10, size=32)
    vals, tests = [], set()
    for fold in range(4):
        data = SpaceNetDataModule(aoi, cache_dir=tmp_path / "cache", crop_size=32, split="kfold", folds=4,
                                  fold=fold, test_fraction=0.2, seed=3)  # fmt: skip
        data.setup()
        assert data.split_counts() == {"train": 6, "val": 2, "test": 2, "unused": 0}
        vals.append({row.tile_id for row in data.manifest if row.split == "val"})
        tests.add(frozenset(row.tile_id for row in data.manifest if row.split == "test"))
        rest = [row.tile_id for row in data.manifest if row.split != "test"]  # manifest rows in tile order
        expected = list(KFold(4, shuffle=True, random_state=3).split(rest))[fold][1]
        assert vals[-1] == {rest[i] for i in expected}
    assert len(tests) == 1  # the same test tiles in every fold
    assert set().union(*vals) == set(rest) and sum(len(v) for v in vals) == 8  # each tile val once
    with pytest.raises(UserInputError, match=r"data.folds=1 must be 2..8 .* and data.fold=0 in 0..0"):
        SpaceNetDataModule(
            aoi, cache_dir=tmp_path / "cache", split="kfold", folds=1, test_fraction=0.2
        ).setup()


def test_city_channels_append_one_hot_planes(tmp_path):
    aoi = make_spacenet3(tmp_path / "sn3", tiles=3, size=32)
    data = SpaceNetDataModule(aoi, cache_dir=tmp_path / "cache", crop_size=32, city_channels=True,
                              max_value=2047, val_fraction=0.34, test_fraction=0.0)  # fmt: skip
    image, _ = data.dataset("val")[0]
    assert image.shape == (12, 32, 32)
    assert image[:8].max() <= 1.0 and image[:8].min() > 0  # the bands, normalised
    assert [float(image[8 + city].mean()) for city in range(4)] == [0.0, 0.0, 0.0, 1.0]  # Khartoum
    rotterdam = SpaceNetDataModule(
        make_spacenet6(tmp_path / "sn6"), cache_dir=tmp_path / "c6", city_channels=True
    )
    with pytest.raises(
        UserInputError, match="tile 'AOI_11_Rotterdam_.*' names none of the SpaceNet 3 cities"
    ):
        rotterdam.setup()


def test_roads_unet_config_fits_with_apls_and_predicts_road_graphs(tmp_path, capsys):
    """configs/spacenet3_unet_roads.yaml on synthetic Khartoum tiles (8 bands + 4 city channels): val/apls
    and the graph panels are logged, and `predict` writes what the road evaluator scores."""
    import yaml

    from lightning_app.cli import cli_main

    aoi = make_spacenet3(tmp_path / "sn3", tiles=8, size=64, pixels=bright_road, overhang=0.0)
    override = {
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "enable_progress_bar": False},
        "data": {"init_args": {"data_dir": str(aoi.parent), "cache_dir": str(tmp_path / "cache"),
                               "crop_size": 64, "batch_size": 2, "num_workers": 0, "folds": 3}},
    }  # fmt: skip
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(override))
    config = str(Path(__file__).resolve().parents[1] / "configs" / "spacenet3_unet_roads.yaml")
    configs = ["--config", config, "--config", str(tmp_path / "override.yaml")]
    fit = cli_main(["fit", *configs])
    events = EventAccumulator(fit.trainer.log_dir)
    events.Reload()
    assert {"Validation/apls", "Validation/apls_truth_onto_proposal"} <= set(events.Tags()["scalars"])
    assert "Validation/road_graphs" in events.Tags()["images"]
    checkpoint = fit.trainer.checkpoint_callback.best_model_path
    assert "best-apls" in checkpoint
    predict = cli_main(["predict", *configs, "--ckpt_path", checkpoint])
    folder = Path(predict.trainer.log_dir) / "predictions"
    test_ids = predict.datamodule.dataset("test").tile_ids
    assert sorted(p.stem for p in (folder / "masks").glob("*.tif")) == sorted(test_ids)
    proposal = str(folder / "proposals.csv")
    evaluate(["spacenet-roads", "--truth", str(aoi / "geojson_roads"), "--proposal", proposal, "--images",
              str(aoi / "PS-MS"), "--json"])  # fmt: skip
    scored = {row["Name"] for row in json.loads(capsys.readouterr().out.splitlines()[-1])["results"]}
    assert set(test_ids) <= scored


def road_on_even_tiles(size: int, seed: int) -> np.ndarray:
    """bright_road on even tiles; odd tiles dark everywhere (the network sees no road: APLS 0)."""
    return bright_road(size, seed) if seed % 2 == 0 else np.full((8, size, size), 20, dtype=np.uint16)


def test_apls_is_the_mean_over_the_tiles_of_every_ddp_process(tmp_path):
    """Two gloo processes each score one validation tile (one with a visible road, one without): the
    logged val/apls is the mean of both, as one process computes it, not one process's own tile. (This
    test found the data module making one more broadcast on rank 0 than on the others.)"""
    import subprocess
    import sys

    import yaml

    from datamodules.spacenet.splits import ManifestRow, write_manifest

    aoi = make_spacenet3(tmp_path / "sn3", tiles=4, size=SIZE, pixels=road_on_even_tiles, overhang=0.0)
    images = sorted((aoi / "PS-MS").glob("*.tif"))
    labels = sorted((aoi / "geojson_roads").glob("*.geojson"))
    rows = [ManifestRow(f"AOI_5_Khartoum_img{i}", f"AOI_5_Khartoum_img{i}", "val" if i < 2 else "train", "",
                        str(images[i]), str(labels[i])) for i in range(4)]  # fmt: skip
    write_manifest(tmp_path / "manifest.csv", rows)
    options = {"data_dir": str(aoi), "cache_dir": str(tmp_path / "cache"), "crop_size": SIZE,
               "max_value": 2047, "split_manifest": str(tmp_path / "manifest.csv"), "num_workers": 0,
               "eval_batch_size": 1}  # fmt: skip
    single = trainer(tmp_path, [SpaceNetRoadEvaluation(panels=0)]).validate(
        SegmentationModule(BrightBand(20.0)), datamodule=SpaceNetDataModule(**options), verbose=False
    )[0]["val/apls"]
    assert 0.4 < single < 0.5  # one tile about 0.95, the other 0
    override = {
        "trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "enable_progress_bar": False,
                    "callbacks": [{"class_path": "callbacks.spacenet_roads.SpaceNetRoadEvaluation",
                                   "init_args": {"panels": 0}}]},
        "model": {"init_args": {"net": {"class_path": "tests.test_road_training.BrightBand",
                                        "init_args": {"scale": 20.0}}, "loss": [{"name": "bce"}]}},
        "data": {"init_args": {**options, "city_channels": False}},
    }  # fmt: skip
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(override))
    root = Path(__file__).resolve().parents[1]
    config = str(root / "configs" / "spacenet3_unet_roads.yaml")
    command = [sys.executable, str(root / "train.py"), "validate", "--config", config, "--config",
               str(tmp_path / "ddp.yaml")]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "spacenet3_unet_roads").iterdir()
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert events.Scalars("Validation/apls")[-1].value == pytest.approx(single, abs=1e-6)


def test_validation_apls_equals_the_evaluator_on_the_written_csv(tmp_path, capsys):
    """The same two tiles as the validation split (SpaceNetRoadEvaluation) and as the test split
    (SpaceNetPredictionWriter's proposals.csv, scored by the evaluator): the graphs are built alike, so
    val/apls and both its directions equal the evaluator's mean over the two tiles."""
    from datamodules.spacenet.splits import ManifestRow, write_manifest

    aoi = make_spacenet3(tmp_path / "sn3", tiles=4, size=SIZE, pixels=bright_road, overhang=1.0)
    images = sorted((aoi / "PS-MS").glob("*.tif"))
    labels = sorted((aoi / "geojson_roads").glob("*.geojson"))
    options = {"data_dir": aoi, "crop_size": SIZE, "max_value": 2047, "num_workers": 0}
    modules = {}
    for split in ("val", "test"):
        rows = [ManifestRow(f"AOI_5_Khartoum_img{i}", f"AOI_5_Khartoum_img{i}", split if i < 2 else "train",
                            "", str(images[i]), str(labels[i])) for i in range(4)]  # fmt: skip
        write_manifest(tmp_path / f"{split}.csv", rows)
        modules[split] = SpaceNetDataModule(**options, cache_dir=tmp_path / f"cache_{split}",
                                            split_manifest=str(tmp_path / f"{split}.csv"))  # fmt: skip
    model = SegmentationModule(BrightBand(20.0))
    logged = trainer(tmp_path, [SpaceNetRoadEvaluation(panels=0)]).validate(
        model, datamodule=modules["val"], verbose=False
    )[0]
    out = tmp_path / "predictions"
    trainer(tmp_path, [SpaceNetPredictionWriter(output_dir=str(out))]).predict(
        model, datamodule=modules["test"], return_predictions=False
    )
    evaluate(["spacenet-roads", "--truth", str(aoi / "geojson_roads"), "--proposal",
              str(out / "proposals.csv"), "--images", str(aoi / "PS-MS"), "--json"])  # fmt: skip
    rows = {row["Name"]: row for row in json.loads(capsys.readouterr().out)["results"]}
    tiles = ("AOI_5_Khartoum_img0", "AOI_5_Khartoum_img1")
    for key, column in (("val/apls", "APLS"), ("val/apls_truth_onto_proposal", "APLS_gt_onto_prop"),
                        ("val/apls_proposal_onto_truth", "APLS_prop_onto_gt")):  # fmt: skip
        expected = np.mean([rows[tile][column] for tile in tiles])
        assert logged[key] == pytest.approx(expected, abs=1e-6)
    assert 0.5 < logged["val/apls"] < 0.99  # the roads run 1 m past the tiles: not a trivial 0 or 1
