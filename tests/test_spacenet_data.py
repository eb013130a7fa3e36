"""SpaceNetDataModule on synthetic GeoTIFF + GeoJSON tiles: layouts, masks, normalisation, tiling,
splits, augmentation, prediction output and bad input."""

import csv
import json
import re
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import shapely
import torch
from shapely.geometry import LineString

from datamodules.spacenet import SpaceNetDataModule
from datamodules.spacenet.augmentation import DEFAULT_AUGMENTATIONS, Augmentation
from datamodules.spacenet.geo_output import mask_polygons, write_geotiff, write_polygons_geojson
from datamodules.spacenet.masks import MaskCache
from datamodules.spacenet.pending_image import PendingImage, collate_samples
from datamodules.spacenet.rasters import read_info
from datamodules.spacenet.splits import report_subtile_split
from datamodules.spacenet.tiling import sliding_windows, stitch
from lightning_app.errors import UserInputError
from tests.spacenet_fixtures import (
    SN6_STEM,
    make_spacenet3,
    make_spacenet6,
    pixel_box,
    rgb_pixels,
    tile_transform,
    write_geojson,
    write_tile,
)


def datamodule(aoi, tmp_path, **options) -> SpaceNetDataModule:
    options = {"cache_dir": tmp_path / "cache", "crop_size": 32, **options}
    data = SpaceNetDataModule(aoi, **options)
    data.prepare_data()
    data.setup()
    return data


def full_mask(data: SpaceNetDataModule, tile_id: str) -> np.ndarray:
    tile = next(t for t in data.tiles if t.pair.tile_id == tile_id)
    window = rasterio.windows.Window(0, 0, tile.info.width, tile.info.height)
    return data.mask_cache().read(tile.pair, window)


def sn6_tile(aoi, product, tile, pixels, transform, geometries, crs="EPSG:4326", nodata=0):
    write_tile(
        aoi / product / f"{SN6_STEM.format(product=product, tile=tile)}.tif", pixels, transform, nodata
    )
    label = aoi / "geojson_buildings" / f"{SN6_STEM.format(product='Buildings', tile=tile)}.geojson"
    return write_geojson(label, geometries, crs)


# ----- layouts --------------------------------------------------------------------------------------
def test_spacenet6_layout_pairs_files_and_reports_unpaired_ones(tmp_path):
    aoi = make_spacenet6(tmp_path / "sn6", tiles=4)
    (aoi / "PS-RGB" / f"{SN6_STEM.format(product='PS-RGB', tile=1)}.tif").unlink()
    write_tile(
        aoi / "PS-RGB" / f"{SN6_STEM.format(product='PS-RGB', tile=9)}.tif",
        rgb_pixels(64, 9),
        tile_transform(),
    )
    with pytest.warns(
        UserWarning,
        match=r"1 PS-RGB images without a label file \(first: SN6_.*tile_9.tif\); "
        r"1 label files without an image \(first: SN6_.*Buildings.*tile_1.geojson\)",
    ):
        data = datamodule(aoi, tmp_path)
    assert [tile.pair.tile_id[-6:] for tile in data.tiles] == ["tile_0", "tile_2", "tile_3"]
    assert data.discovery.layout.name == "spacenet6_buildings"


@pytest.mark.parametrize(
    ("folders", "layout", "product"),
    [
        (
            ("AOI_2_Vegas_Train/RGB-PanSharpen", "AOI_2_Vegas_Train/geojson/buildings"),
            "spacenet2_buildings",
            "RGB-PanSharpen",
        ),
        (("AOI_3_Paris/PS-MS", "AOI_3_Paris/geojson_roads"), "spacenet3_roads", "PS-MS"),
    ],
)
def test_spacenet2_and_3_layouts_pair_by_aoi_and_image_number(tmp_path, folders, layout, product):
    image_folder, label_folder = (tmp_path / folder for folder in folders)
    aoi = image_folder.parent.name.removesuffix("_Train")
    write_tile(image_folder / f"SN_{aoi}_{product}_img7.tif", rgb_pixels(64, 0), tile_transform())
    line = LineString([(599_000, 5_754_990), (601_000, 5_754_990)])
    write_geojson(
        label_folder / f"labels_{aoi}_geojson_img7.geojson", [pixel_box(tile_transform(), 1, 1, 4, 4), line]
    )
    data = datamodule(tmp_path, tmp_path, road_buffer=1, road_buffer_unit="px")
    assert data.discovery.layout.name == layout
    assert [tile.pair.tile_id for tile in data.tiles] == [f"{aoi}_img7"]
    mask = full_mask(data, f"{aoi}_img7")
    # buildings keep the polygon (the line is not a building); roads keep the line, 2 px wide
    expected = 16 if layout == "spacenet2_buildings" else 2 * 64
    assert (mask == 1).sum() == expected


def test_unknown_layout_lists_the_known_ones_and_what_was_found(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(
        UserInputError,
        match=r"does not look like a SpaceNet layout\. Known layouts: "
        r"spacenet2_buildings.*spacenet6_buildings.*spacenet3_roads.*Found: images/, notes.txt",
    ):
        datamodule(tmp_path, tmp_path)


# ----- reading and masks ----------------------------------------------------------------------------
@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:32631"])
def test_footprints_in_either_crs_burn_exactly_their_pixels(tmp_path, crs):
    aoi = tmp_path / "AOI_11_Rotterdam"
    transform = tile_transform()
    boxes = [pixel_box(transform, 2, 3, 5, 7), pixel_box(transform, 30, 40, 12, 9)]
    sn6_tile(aoi, "PS-RGB", 0, rgb_pixels(64, 0), transform, boxes, crs)
    mask = full_mask(datamodule(aoi, tmp_path), "AOI_11_Rotterdam_20190804111224_20190804111453_tile_0")
    assert (mask == 1).sum() == 5 * 7 + 12 * 9
    assert mask[2:7, 3:10].all() and mask[30:42, 40:49].all()


def test_empty_label_file_gives_an_empty_mask_and_invalid_polygons_are_repaired(tmp_path):
    aoi = tmp_path / "AOI_11_Rotterdam"
    transform = tile_transform()
    sn6_tile(aoi, "PS-RGB", 0, rgb_pixels(64, 0), transform, [])
    left, top = transform.c, transform.f
    bowtie = shapely.Polygon(
        [(left, top), (left + 8, top - 8), (left + 8, top), (left, top - 8)]
    )  # 16 x 16 px
    sn6_tile(
        aoi,
        "PS-RGB",
        1,
        rgb_pixels(64, 1),
        transform,
        [bowtie, {"type": "Polygon", "coordinates": [[[0, 0]]]}],
        "EPSG:32631",
    )
    with pytest.warns(
        UserWarning, match="1 invalid polygons repaired .* 1 features without a usable geometry"
    ):
        data = datamodule(aoi, tmp_path)
    empty, repaired = (full_mask(data, tile.pair.tile_id) for tile in data.tiles)
    assert empty.sum() == 0
    # make_valid splits the bow-tie into two 64 px triangles; a pixel centre on a diagonal edge is
    # burned for one of the two triangles only (GDAL's half-open rule), so exactly 2 * 64 pixels
    assert (repaired == 1).sum() == 128 and repaired[0, 0] == 1 and repaired[0, 8] == 0


@pytest.mark.parametrize(("rule", "value"), [("ignore", 255), ("background", 0)])
def test_no_data_pixels_are_ignored_or_background(tmp_path, rule, value):
    aoi = tmp_path / "AOI_11_Rotterdam"
    pixels = rgb_pixels(64, 0)
    pixels[:, :16, :16] = 0  # a no-data corner that cuts a building
    transform = tile_transform()
    sn6_tile(aoi, "PS-RGB", 0, pixels, transform, [pixel_box(transform, 10, 10, 8, 8)])
    data = datamodule(aoi, tmp_path, nodata=rule)
    mask = full_mask(data, data.tiles[0].pair.tile_id)
    assert (mask[:16, :16] == value).all()
    assert (mask == 1).sum() == 64 - 36  # the building's 6 x 6 px inside the corner are not building


def test_three_class_masks_mark_the_inner_edge_of_each_building(tmp_path):
    aoi = tmp_path / "AOI_11_Rotterdam"
    transform = tile_transform()
    sn6_tile(
        aoi,
        "PS-RGB",
        0,
        rgb_pixels(64, 0),
        transform,
        [pixel_box(transform, 10, 10, 10, 10), pixel_box(transform, 10, 20, 10, 10)],
    )
    data = datamodule(aoi, tmp_path, mask_classes="three_class", edge_width=2)
    mask = full_mask(data, data.tiles[0].pair.tile_id)
    assert data.class_names == ["background", "building", "edge"]
    assert (mask == 1).sum() == 2 * 36 and (mask == 2).sum() == 2 * 64
    assert (mask[10:20, 18:22] == 2).all()  # the wall the two buildings share is edge on both sides


@pytest.mark.parametrize(("buffer", "unit", "rows"), [(2.0, "m", 8), (8, "px", 16)])
def test_roads_are_buffered_in_metres_or_pixels(tmp_path, buffer, unit, rows):
    transform = tile_transform()
    write_tile(
        tmp_path / "AOI_5_Khartoum" / "PS-RGB" / "SN3_roads_train_AOI_5_Khartoum_PS-RGB_img1.tif",
        rgb_pixels(64, 0),
        transform,
    )
    left, top = transform.c, transform.f
    road = LineString([(left - 50, top - 16), (left + 100, top - 16)])  # along the row boundary at 32 px
    write_geojson(
        tmp_path
        / "AOI_5_Khartoum"
        / "geojson_roads"
        / "SN3_roads_train_AOI_5_Khartoum_geojson_roads_img1.geojson",
        [road],
    )
    data = datamodule(tmp_path, tmp_path, road_buffer=buffer, road_buffer_unit=unit)
    mask = full_mask(data, "AOI_5_Khartoum_img1")
    assert (mask == 1).sum() == rows * 64
    assert mask[32 - rows // 2 : 32 + rows // 2].all()


@pytest.mark.parametrize(
    ("dtype", "bands", "order", "options"),
    [
        ("uint8", 3, None, {"max_value": 255}),
        ("uint16", 8, [4, 2, 1, 0, 3, 5, 6, 7], {"max_value": 2047}),
        ("float32", 4, None, {"max_value": 100}),
    ],
)
def test_any_band_count_and_dtype_in_the_configured_order(tmp_path, dtype, bands, order, options):
    aoi = tmp_path / "AOI_11_Rotterdam"
    pixels = np.stack([np.full((64, 64), 10 * (band + 1)) for band in range(bands)]).astype(dtype)
    transform = tile_transform()
    sn6_tile(aoi, "PS-RGBNIR", 0, pixels, transform, [pixel_box(transform, 0, 0, 4, 4)])
    data = datamodule(aoi, tmp_path, product="PS-RGBNIR", bands=order, augmentations=[], **options)
    image, mask = data.dataset("train")[0]
    expected = [10 * (band + 1) / options["max_value"] for band in (order or range(bands))]
    assert image.shape == (bands, 32, 32) and image.dtype == torch.float32
    assert torch.allclose(image[:, 0, 0], torch.tensor(expected))


def test_masks_are_cached_per_file_and_settings(tmp_path, monkeypatch):
    aoi = make_spacenet6(tmp_path / "data", tiles=3)
    datamodule(aoi, tmp_path)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3

    def no_rasterising(*args):
        raise AssertionError("rasterised again")

    monkeypatch.setattr("datamodules.spacenet.masks.rasterize_mask", no_rasterising)
    data = datamodule(aoi, tmp_path)
    assert (full_mask(data, data.tiles[0].pair.tile_id) == 1).sum() == 64
    with pytest.raises(AssertionError, match="rasterised again"):
        datamodule(aoi, tmp_path, mask_classes="three_class")


# ----- normalisation --------------------------------------------------------------------------------
def test_percentile_and_mean_std_statistics_come_from_the_train_split_and_travel_with_checkpoints(tmp_path):
    aoi = make_spacenet6(tmp_path / "data", tiles=10)
    data = datamodule(aoi, tmp_path, normalization="mean_std", augmentations=[])
    train = [
        t for t in data.tiles if t.pair.tile_id in {r.tile_id for r in data.manifest if r.split == "train"}
    ]
    with rasterio.open(train[0].pair.image):
        pixels = np.concatenate(
            [rgb_pixels(64, int(t.pair.tile_id[-1]))[:, ::4, ::4].reshape(3, -1) for t in train], 1
        )
    assert np.allclose(data.normalization.mean, pixels.mean(1), rtol=1e-5)
    restored = SpaceNetDataModule(aoi, cache_dir=tmp_path / "cache", normalization="mean_std")
    restored.load_state_dict(data.state_dict())
    assert restored.normalization.std == data.normalization.std

    stretched = datamodule(aoi, tmp_path, normalization="percentile", percentiles=(10, 90))
    image, _ = stretched.dataset("val")[0]
    assert image.min() == 0 and image.max() == 1
    assert np.allclose(stretched.normalization.low, np.percentile(pixels, 10, axis=1))


class ExpectsUnitRange(pl.LightningModule):
    """A 1x1-conv segmenter trained on the batches of the SpaceNet DataModule."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def training_step(self, batch, batch_index):
        images, masks = batch
        return torch.nn.functional.cross_entropy(self.conv(images), masks, ignore_index=255)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(("mean", "warned"), [(1024.0, True), (0.0, False)])
def test_first_training_batch_outside_the_promised_range_warns(tmp_path, mean, warned):
    # Macura's bug: x / 1024 - 1 gives [-1, 1] inputs to a model that expects [0, 1]
    def eleven_bit(size, seed):
        return np.random.default_rng(seed).integers(1, 2048, (3, size, size), np.uint16)

    aoi = make_spacenet6(tmp_path / "data", tiles=4, pixels=eleven_bit)
    data = SpaceNetDataModule(
        aoi,
        cache_dir=tmp_path / "cache",
        crop_size=32,
        normalization="mean_std",
        mean=[mean] * 3,
        std=[1024.0 if warned else 2048.0] * 3,
        input_range=(0.0, 1.0),
    )
    trainer = pl.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.warns(UserWarning) as record:
        trainer.fit(ExpectsUnitRange(), datamodule=data)
    messages = [str(item.message) for item in record if "first training batch" in str(item.message)]
    assert bool(messages) == warned
    if warned:
        assert re.search(r"inputs in \[-0\.99\d*, 0\.99\d*\].*OUTSIDE the range \[0, 1\]", messages[0])


# ----- tiling --------------------------------------------------------------------------------------
def test_whole_tiles_are_padded_to_a_multiple_of_32_with_ignored_mask(tmp_path):
    aoi = make_spacenet6(tmp_path / "data", tiles=3, size=70)
    image, mask = datamodule(aoi, tmp_path).dataset("test")[0]
    assert image.shape == (3, 96, 96) and mask.shape == (96, 96)
    assert (mask[70:] == 255).all() and (mask[:, 70:] == 255).all() and (image[:, 70:] == 0).all()
    assert (mask[:70, :70] != 255).all()


def test_overlapping_windows_cover_the_tile_and_stitch_back_exactly():
    windows = sliding_windows(0, 100, 90, size=32, overlap=8)
    assert {(w.row, w.col) for w in windows} >= {(68, 58), (0, 0)}
    tile = np.random.default_rng(0).random((2, 100, 90)).astype(np.float32)
    pieces = [tile[:, w.row : w.row + w.height, w.col : w.col + w.width] for w in windows]
    assert np.array_equal(stitch(windows, pieces, 100, 90), tile)


def test_windows_tiling_in_the_datamodule(tmp_path):
    aoi = make_spacenet6(tmp_path / "data", tiles=3, size=70)
    test = datamodule(aoi, tmp_path, eval_tiling="windows", window_size=32, window_overlap=4).dataset("test")
    assert len(test) == len(set(test.tile_indices)) * 9
    assert all(image.shape == (3, 32, 32) for image, _ in (test[i] for i in range(len(test))))


def test_training_crops_reject_empty_ones_at_the_configured_rate(tmp_path):
    aoi = make_spacenet6(tmp_path / "data", tiles=4, size=64)  # one 8 x 8 building per 64 x 64 tile
    torch.manual_seed(0)
    labelled = {}
    for rate in (0.0, 1.0):
        train = datamodule(aoi, tmp_path, crop_size=16, reject_empty_crops=rate, augmentations=[]).dataset(
            "train"
        )
        labelled[rate] = np.mean([(train[i % len(train)][1] == 1).any().item() for i in range(120)])
    assert labelled[0.0] < 0.35 and labelled[1.0] > 0.6


def test_report_subtiles_tiling_and_split(tmp_path):
    aoi = make_spacenet6(tmp_path / "data", tiles=10, size=900)
    data = datamodule(aoi, tmp_path, split="report_subtiles", augmentations=[])
    # 160 sub-tiles: int(0.7 * 160) = 112 train_all, halves 56 and 24, then 70 % / 30 % of 56
    assert data.split_counts() == {"train": 39, "val": 17, "test": 24, "unused": 80}
    train = data.dataset("train")
    assert len(train) == 39 and train[0][0].shape == (3, 224, 224)
    offsets = sorted({(w.row, w.col) for w in train.windows + data.dataset("test").windows})
    assert set(offsets) <= {(2 + 224 * r, 2 + 224 * c) for r in range(4) for c in range(4)}
    names = [f"tile_{t}_subtile_{k}" for t in range(3401) for k in range(1, 17)]
    counts = {split: 0 for split in ("train", "val", "test", "unused")}
    for split in report_subtile_split(names).values():
        counts[split] += 1
    assert counts == {"train": 13331, "val": 5714, "test": 8162, "unused": 54416 - 27207}


# ----- splits --------------------------------------------------------------------------------------
def test_random_split_is_seeded_and_written_to_a_reloadable_manifest(tmp_path):
    aoi = make_spacenet6(tmp_path / "data", tiles=10)
    first = datamodule(aoi, tmp_path, seed=3)
    again = datamodule(aoi, tmp_path, seed=3)
    other = datamodule(aoi, tmp_path, seed=4)
    assert first.manifest == again.manifest != other.manifest
    manifest = tmp_path / "manifest.csv"
    from datamodules.spacenet.splits import write_manifest

    write_manifest(manifest, first.manifest)
    reused = datamodule(aoi, tmp_path, seed=4, split_manifest=manifest)
    assert reused.manifest == first.manifest


def test_geographic_split_never_puts_overlapping_ground_in_two_splits(tmp_path):
    # 12 tiles of 64 px every 48 px along a strip: neighbours overlap, like SpaceNet 6's SAR strips,
    # and one separate strip far away
    aoi = make_spacenet6(tmp_path / "data", tiles=12, size=64, spacing=48)
    for tile in range(12, 20):
        transform = tile_transform(10_000, tile * 64)
        sn6_tile(aoi, "PS-RGB", tile, rgb_pixels(64, tile), transform, [pixel_box(transform, 1, 1, 2, 2)])
    data = datamodule(aoi, tmp_path, split="geographic", block_size=32.0, val_fraction=0.2, test_fraction=0.2)
    boxes = {t.pair.tile_id: shapely.box(*t.info.bounds) for t in data.tiles}
    by_split = {
        split: [boxes[r.tile_id] for r in data.manifest if r.split == split]
        for split in ("train", "val", "test")
    }
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert all(x.intersection(y).area == 0 for x in by_split[a] for y in by_split[b])
    assert all(by_split.values())
    # the random split of the same tiles does mix overlapping ground
    mixed = datamodule(aoi, tmp_path, split="random", val_fraction=0.2, test_fraction=0.2)
    groups = {r.tile_id: r.split for r in mixed.manifest}
    strip = [groups[t.pair.tile_id] for t in data.tiles[:12]]
    assert len(set(strip)) > 1


def test_manifest_is_written_to_the_run_dir(tmp_path):
    aoi = make_spacenet6(tmp_path / "data", tiles=4)
    data = SpaceNetDataModule(aoi, cache_dir=tmp_path / "cache", crop_size=32, normalization="percentile")
    trainer = pl.Trainer(
        max_steps=1,
        default_root_dir=tmp_path / "runs",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(ExpectsUnitRange(), datamodule=data)
    with open(f"{trainer.log_dir}/split_manifest.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["split"] for row in rows] == [row.split for row in data.manifest]
    stored = json.loads((Path(trainer.log_dir) / "normalization.json").read_text())
    assert stored["method"] == "percentile" and stored["low"] == data.normalization.low is not None


# ----- augmentation --------------------------------------------------------------------------------
def test_augmentation_differs_per_sample_keeps_masks_aligned_and_spares_val(tmp_path):
    aoi = tmp_path / "AOI_11_Rotterdam"
    transform = tile_transform()
    pixels = rgb_pixels(32, 0)
    pixels[0] = np.where(np.arange(32)[:, None] < 12, 200, 50)  # band 0 is bright where the building is
    pixels[0, :, 20:] = 50
    for tile in range(6):
        sn6_tile(aoi, "PS-RGB", tile, pixels, transform, [pixel_box(transform, 0, 0, 12, 20)])
    data = datamodule(aoi, tmp_path, crop_size=None, split="random", val_fraction=0.2, test_fraction=0.2)
    loader = torch.utils.data.DataLoader(data.dataset("train"), batch_size=1, num_workers=2)
    samples = [batch for _ in range(3) for batch in loader]
    images = {
        tuple(image[0, 0, 0].flatten().tolist()) + tuple(image[0, 0, -1, :3].tolist()) for image, _ in samples
    }
    assert len(images) > 2  # different flips and rotations across samples and workers
    for image, mask in samples:
        assert torch.equal(mask[0] == 1, image[0, 0] > 0.5)
    building = torch.zeros(32, 32, dtype=torch.long)
    building[:12, :20] = 1
    for split in ("val", "test"):
        dataset = data.dataset(split)
        assert all(torch.equal(dataset[i][1], building) for i in range(len(dataset)) for _ in range(4))


def d4(array: np.ndarray) -> list[np.ndarray]:
    """The 8 flips and rotations of the last two axes of ``array``."""
    turns = [np.rot90(array, k, axes=(-2, -1)) for k in range(4)]
    return turns + [turn[..., ::-1] for turn in turns]


@pytest.mark.parametrize(
    ("extra", "dtype", "size"),
    [
        ([], np.uint16, (6, 6)),
        ([], np.uint16, (6, 7)),
        ([], np.uint8, (5, 5)),
        ([], np.float32, (6, 6)),
        ([], np.float64, (6, 7)),
        ([{"Transpose": {"p": 0.0}}], np.uint16, (6, 6)),
    ],
)
def test_flips_and_rotations_as_views_match_albumentations(extra, dtype, size):
    """The default transforms run as views of the raw pixels (one of the 8 flips and rotations, made
    contiguous by OpenCV for any dtype, in the given arrays when square; the mask alike; all 8 drawn);
    adding another transform sends them through albumentations, with the same outcomes."""
    augmentation = Augmentation([*DEFAULT_AUGMENTATIONS, *extra])
    assert augmentation.on_raw_pixels == (not extra)
    image = np.arange(2 * size[0] * size[1], dtype=dtype).reshape(2, *size)  # raw pixels, as read
    mask = (image[0] % 7).astype(np.uint8)
    seen = set()
    torch.manual_seed(0)
    for _ in range(80):
        given_image, given_mask = image.copy(), mask.copy()
        out_image, out_mask = augmentation(given_image, given_mask)
        index = next(i for i, candidate in enumerate(d4(image)) if np.array_equal(candidate, out_image))
        assert np.array_equal(out_mask, d4(mask)[index]) and out_image.dtype == dtype
        if not extra:
            assert out_image.flags.c_contiguous and out_mask.flags.c_contiguous
            assert (out_image is given_image and out_mask is given_mask) == (out_image.shape == image.shape)
        seen.add(index)
    assert seen == set(range(8))


def test_loaders_move_uint8_masks_and_widen_them_on_the_device(tmp_path):
    data = datamodule(make_spacenet6(tmp_path / "data", tiles=4), tmp_path, crop_size=64)
    images, masks = next(iter(data.train_dataloader()))
    assert masks.dtype == torch.uint8 and images.dtype == torch.float32
    widened = data.on_after_batch_transfer((images, masks), 0)[1]
    assert widened.dtype == torch.long and torch.equal(widened, masks.long())
    assert data.evaluation_subset("train", size=1)[0][1].dtype == torch.long  # what callbacks batch


@pytest.mark.parametrize("workers", [0, 2])
def test_loaders_write_each_image_into_the_batch_as_the_dataset_gives_it(tmp_path, workers):
    """The loaders' collate normalises, adds the city planes and zero-pads every image straight into the
    batch (in shared memory in a worker): the batches equal the dataset's own samples, whose bands are the
    raw pixels / max_value."""
    aoi = make_spacenet3(tmp_path / "sn3", tiles=6, size=70)
    data = datamodule(aoi, tmp_path, city_channels=True, max_value=2047, val_fraction=0.5, test_fraction=0.0,
                      num_workers=workers)  # fmt: skip
    dataset = data.dataset("val")
    batches = list(data.val_dataloader())
    assert [len(images) for images, _ in batches] == [2, 1]
    images, masks = (torch.cat(parts) for parts in zip(*batches, strict=True))
    assert images.shape == (3, 12, 96, 96) and masks.dtype == torch.uint8
    assert torch.equal(images, torch.stack([dataset[i][0] for i in range(3)]))
    assert torch.equal(masks.long(), torch.stack([dataset[i][1] for i in range(3)]))
    with rasterio.open(dataset.reader.tiles[dataset.windows[0].tile].pair.image) as source:
        raw = source.read()
    assert torch.equal(images[0, :8, :70, :70], torch.from_numpy(raw / np.float32(2047)))
    assert (images[:, 8 + 3, :70, :70] == 1).all() and (images[:, 8:11] == 0).all()  # Khartoum's plane
    assert (images[:, :, 70:] == 0).all() and (images[:, :, :, 70:] == 0).all()  # padding


def test_pending_images_already_normalised_are_copied_and_shapes_must_agree():
    pixels = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    image = PendingImage(pixels, None, None, 5, 6).array()
    assert (
        image.shape == (2, 5, 6) and np.array_equal(image[:, :3, :4], pixels) and image.sum() == pixels.sum()
    )
    mask = torch.zeros(5, 6, dtype=torch.uint8)
    other = PendingImage(pixels, None, None, 6, 6)
    with pytest.raises(
        RuntimeError, match=r"cannot batch images of different shapes \[\(2, 5, 6\), \(2, 6, 6\)\]"
    ):
        collate_samples([(PendingImage(pixels, None, None, 5, 6), mask), (other, mask)])


def test_bad_augmentation_is_reported_at_start_up(tmp_path):
    aoi = make_spacenet6(tmp_path / "data", tiles=3)
    with pytest.raises(UserInputError, match="'Spin' is not an albumentations transform"):
        SpaceNetDataModule(aoi, augmentations=[{"Spin": {}}])
    with pytest.raises(UserInputError, match="HorizontalFlip has no argument prob; it takes p"):
        SpaceNetDataModule(aoi, augmentations=[{"HorizontalFlip": {"prob": 0.5}}])


# ----- prediction output ---------------------------------------------------------------------------
def test_predictions_are_written_on_the_source_georeference(tmp_path):
    transform = tile_transform(4, 8)
    source = write_tile(tmp_path / "tile.tif", rgb_pixels(64, 0), transform)
    info = read_info(source)
    probability = np.zeros((64, 64), np.float32)
    probability[10:20, 30:36] = 0.9
    probability[40:42, 0:2] = 0.8
    written = write_geotiff(tmp_path / "out" / "probability.tif", probability, info)
    with rasterio.open(written) as result:
        assert result.crs == info.crs and result.transform == info.transform
        assert np.array_equal(result.read(1), probability)
    polygons = mask_polygons(probability > 0.5, min_area=5)
    assert [polygon.area for polygon in polygons] == [60.0]
    geojson = json.loads(
        write_polygons_geojson(tmp_path / "out" / "buildings.geojson", polygons, info).read_text()
    )
    feature = geojson["features"][0]
    assert shapely.from_wkt(feature["properties"]["PolygonWKT_Pix"]).bounds == (30, 10, 36, 20)
    assert shapely.geometry.shape(feature["geometry"]).equals(pixel_box(transform, 10, 30, 10, 6))
    assert geojson["crs"]["properties"]["name"] == "EPSG:32631"


# ----- bad input -----------------------------------------------------------------------------------
def test_corrupt_geotiff_is_named_or_skipped_and_counted(tmp_path):
    aoi = make_spacenet6(tmp_path / "data", tiles=4)
    corrupt = aoi / "PS-RGB" / f"{SN6_STEM.format(product='PS-RGB', tile=2)}.tif"
    corrupt.write_bytes(b"II*\x00not a tiff at all")
    with pytest.raises(UserInputError, match=rf"cannot read GeoTIFF {corrupt}.*skip_bad_files=true"):
        datamodule(aoi, tmp_path)
    with pytest.warns(UserWarning, match=r"skipped 1 bad tiles: .*tile_2: cannot read GeoTIFF"):
        data = datamodule(aoi, tmp_path, skip_bad_files=True)
    assert len(data.tiles) == 3
    with pytest.warns(UserWarning, match="1 bad tiles were skipped in this run"):
        data.teardown("fit")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read GeoJSON .*tile_1.geojson: JSONDecodeError"),
        (
            json.dumps(
                {
                    "type": "FeatureCollection",
                    "crs": {"type": "name", "properties": {"name": "EPSG:999999"}},
                    "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}}],
                }
            ),
            "tile_1.geojson: unknown CRS 'EPSG:999999'",
        ),
    ],
)
def test_bad_geojson_is_named(tmp_path, content, message):
    aoi = make_spacenet6(tmp_path / "data", tiles=3)
    (aoi / "geojson_buildings" / f"{SN6_STEM.format(product='Buildings', tile=1)}.geojson").write_text(
        content
    )
    with pytest.raises(UserInputError, match=message):
        datamodule(aoi, tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 bad tiles"):
        assert len(datamodule(aoi, tmp_path, skip_bad_files=True).tiles) == 2


def test_mask_cache_key_changes_with_the_label_file(tmp_path):
    aoi = make_spacenet6(tmp_path / "data", tiles=3)
    data = datamodule(aoi, tmp_path)
    cache: MaskCache = data.mask_cache()
    pair = data.tiles[0].pair
    before = cache.path(pair)
    write_geojson(pair.label, [])
    assert cache.path(pair) != before


def test_predict_files_are_read_like_the_training_tiles_without_labels(tmp_path):
    aoi = make_spacenet6(tmp_path / "data", tiles=3)
    extra = write_tile(tmp_path / "new" / "scene.tif", rgb_pixels(40, 7), tile_transform())
    data = datamodule(aoi, tmp_path, predict_files=[str(tmp_path / "new" / "*.tif")])
    predict = data.predict_dataset()
    image, mask = predict[0]
    assert image.shape == (3, 64, 64) and (mask == 255).all()
    assert torch.allclose(image[:, :40, :40], torch.from_numpy(rgb_pixels(40, 7) / 255).float())
    assert predict.tile_ids == ["scene"] and predict.reader.tiles[0].pair.image == extra
