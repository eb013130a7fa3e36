"""The SpaceNet LightningDataModule: GeoTIFF tiles and GeoJSON labels as segmentation samples."""

import json
from dataclasses import replace
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from datamodules.image_files import expand_image_paths, output_names
from datamodules.resumable import ResumableData, shuffled_loader
from datamodules.spacenet.augmentation import DEFAULT_AUGMENTATIONS, Augmentation
from datamodules.spacenet.cities import city_index
from datamodules.spacenet.dataset import SpaceNetDataset, Tile, TileReader
from datamodules.spacenet.geo_output import apply_affine
from datamodules.spacenet.labels import LINEAR, POLYGONAL, read_labels
from datamodules.spacenet.layouts import Discovery, TilePair, discover
from datamodules.spacenet.masks import BACKGROUND, MaskCache, MaskSettings
from datamodules.spacenet.normalization import Normalization
from datamodules.spacenet.pending_image import collate_samples
from datamodules.spacenet.rasters import RasterInfo, check_bands, read_info, read_valid, read_window
from datamodules.spacenet.splits import (
    SPLITS,
    UNUSED,
    ManifestRow,
    geographic_split,
    ground_groups,
    kfold_split,
    random_split,
    read_manifest,
    report_subtile_split,
    write_manifest,
)
from datamodules.spacenet.tiling import TileWindow, sliding_windows, subtile_windows, whole_tile
from lightning_app.errors import UserInputError, check_not_negative, check_positive

MANIFEST_NAME = "split_manifest.csv"
NORMALIZATION_NAME = "normalization.json"
STATS_STRIDE = 4  # every 4th pixel of every 4th row of a tile feeds the normalisation statistics


class SpaceNetDataModule(ResumableData, pl.LightningDataModule):
    """SpaceNet buildings (SpaceNet 2 and 6 layouts) or roads (SpaceNet 3) for segmentation.

    ``data_dir`` is the AOI folder (e.g. ``AOI_11_Rotterdam``) or a folder holding AOI folders; the
    layout is recognised from its label folder. Batches are ``(image (N, C, H, W) float, mask (N, H, W)
    long)``; masks hold 0 background, 1 building or road, 2 building edge ('three_class'), and
    ``ignore_index`` where there is no data or padding.

    Args:
        data_dir: the SpaceNet folder.
        product: image folder to read ('PS-RGB', 'PS-RGBNIR', 'SAR-Intensity', 'RGB-PanSharpen',
            'PS-MS', ...); default: the layout's first product present.
        bands: 0-based bands in the order the model gets them (e.g. Macura's [4, 2, 1, 0, 3, 5, 6, 7]);
            default all.
        city_channels: append SpaceNet 3's four one-hot city planes (Vegas, Paris, Shanghai, Khartoum; 1
            for the tile's city) to the bands: the model then gets ``len(bands) + 4`` channels.
        mask_classes: 'binary' or 'three_class' (background / building / building edge).
        edge_width: building edge width in pixels ('three_class').
        road_buffer: distance burned each side of a road centre line (SpaceNet: 2 m).
        road_buffer_unit: 'm' or 'px'.
        nodata: 'ignore' (no-data pixels get ``ignore_index``) or 'background' (Lim et al.).
        ignore_index: mask value ignored by losses and metrics.
        cache_dir: folder of the mask cache; default ``<data_dir>/.mask_cache``.
        normalization: 'fixed' (divide by ``max_value``), 'percentile' or 'mean_std' (see
            :mod:`datamodules.spacenet.normalization`).
        max_value: divisor of 'fixed' (255 for uint8, 2047 for 11-bit uint16).
        percentiles: low and high percentile of 'percentile'.
        mean: per-band means of 'mean_std' (computed on the train split when not given).
        std: per-band standard deviations of 'mean_std'.
        input_range: the range the model expects; the first training batch is checked against it
            (default [0, 1] for 'fixed' and 'percentile').
        stats_tiles: number of train tiles (seeded draw) the statistics are computed from.
        crop_size: training crop in pixels (``null``: whole tiles, padded to a multiple of 32).
        reject_empty_crops: probability of redrawing a training crop with no labelled pixel (up to 10 tries).
        eval_tiling: 'pad' (whole tiles padded to a multiple of 32) or 'windows' (overlapping
            ``window_size`` windows, stitched back by :func:`datamodules.spacenet.tiling.stitch`).
        window_size: size of the 'windows' tiling.
        window_overlap: minimum overlap of neighbouring windows.
        split: 'random' (seeded, by tile), 'geographic' (blocks of ``block_size`` and overlapping
            footprints kept in one split), 'kfold' (seeded test tiles, then fold ``fold`` of ``folds``
            shuffled folds of the rest as val, selim_sef's and Macura's split; ``val_fraction`` does not
            apply) or 'report_subtiles' (Lim et al.'s 224 px sub-tiles and its seed-42 split; tiling then
            follows Lim et al. in every split).
        folds: number of folds of 'kfold' (selim_sef: 4, Macura: 2).
        fold: the fold of 'kfold' that is val (0-based).
        val_fraction: share of tiles in val.
        test_fraction: share of tiles in test.
        block_size: side of the geographic blocks in CRS units (metres for UTM tiles).
        split_manifest: a manifest CSV written by an earlier run, to reuse its split.
        seed: seed of the splits, statistics draw and evaluation subsets.
        augmentations: albumentations transforms for training, ``[{Name: {args}}, ...]``; ``[]`` for
            none. Default: horizontal and vertical flips and 90 degree rotations, p = 0.5 each.
        batch_size: training batch size.
        eval_batch_size: batch size of val, test and predict.
        num_workers: DataLoader workers.
        skip_bad_files: skip (and count) tiles whose GeoTIFF or GeoJSON cannot be read, instead of stopping.
        predict_files: GeoTIFFs (paths or glob patterns) to predict instead of the test split.
    """

    def __init__(
        self,
        data_dir: str | Path = "data/spacenet",
        product: str | None = None,
        bands: list[int] | None = None,
        city_channels: bool = False,
        mask_classes: Literal["binary", "three_class"] = "binary",
        edge_width: float = 2.0,
        road_buffer: float = 2.0,
        road_buffer_unit: Literal["m", "px"] = "m",
        nodata: Literal["ignore", "background"] = "ignore",
        ignore_index: int = 255,
        cache_dir: str | Path | None = None,
        normalization: Literal["fixed", "percentile", "mean_std"] = "fixed",
        max_value: float = 255.0,
        percentiles: tuple[float, float] = (2.0, 98.0),
        mean: list[float] | None = None,
        std: list[float] | None = None,
        input_range: tuple[float, float] | None = None,
        stats_tiles: int = 32,
        crop_size: int | None = 512,
        reject_empty_crops: float = 0.0,
        eval_tiling: Literal["pad", "windows"] = "pad",
        window_size: int = 512,
        window_overlap: int = 64,
        split: Literal["random", "geographic", "kfold", "report_subtiles"] = "random",
        folds: int = 4,
        fold: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        block_size: float = 1000.0,
        split_manifest: str | Path | None = None,
        seed: int = 0,
        augmentations: list[dict] | None = None,
        batch_size: int = 8,
        eval_batch_size: int = 2,
        num_workers: int = 0,
        skip_bad_files: bool = False,
        predict_files: list[str] | None = None,
    ) -> None:
        super().__init__()
        check_positive(
            "data", batch_size=batch_size, eval_batch_size=eval_batch_size, crop_size=crop_size,
            window_size=window_size, stats_tiles=stats_tiles, edge_width=edge_width, road_buffer=road_buffer,
        )  # fmt: skip
        check_not_negative(
            "data", num_workers=num_workers, window_overlap=window_overlap, val_fraction=val_fraction,
            test_fraction=test_fraction,
        )  # fmt: skip
        self.data_dir = Path(data_dir)
        self.product = product
        self.bands = bands
        self.city_channels = city_channels
        self.mask_settings_args = {
            "classes": mask_classes,
            "edge_width": edge_width,
            "road_buffer": road_buffer,
            "road_buffer_unit": road_buffer_unit,
            "nodata": nodata,
            "ignore_index": ignore_index,
        }
        self.ignore_index = ignore_index
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.data_dir / ".mask_cache"
        self.normalization = Normalization(
            normalization, max_value, tuple(percentiles), mean, std, input_range
        )
        self.stats_tiles = stats_tiles
        self.crop_size = crop_size
        self.reject_empty_crops = reject_empty_crops
        self.eval_tiling = eval_tiling
        self.window_size = window_size
        self.window_overlap = window_overlap
        self.split = split
        self.folds = folds
        self.fold = fold
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.block_size = block_size
        self.split_manifest = split_manifest
        self.seed = seed
        self.augmentations = list(DEFAULT_AUGMENTATIONS) if augmentations is None else augmentations
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.skip_bad_files = skip_bad_files
        self.predict_files = predict_files
        # built here so a bad transform fails at start-up, not in a worker
        self.augmentation = Augmentation(self.augmentations) if self.augmentations else None
        self.discovery: Discovery | None = None
        self.tiles: list[Tile] = []
        self.tile_positions: dict[str, int] = {}
        self.skipped: list[str] = []
        self.manifest: list[ManifestRow] = []
        self._range_checked = False

    # ----- files -----------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        names = ["background", self.target.rstrip("s")]
        return [*names, "edge"] if self.mask_settings_args["classes"] == "three_class" else names

    @property
    def target(self) -> str:
        """What the labels mark, from the folder layout: 'buildings' or 'roads'."""
        return self.discovery.layout.target if self.discovery else "buildings"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def mask_cache(self) -> MaskCache:
        settings = MaskSettings(target=self.discovery.layout.target, **self.mask_settings_args)
        return MaskCache(self.cache_dir, settings)

    def _bad(self, name: str, error: UserInputError) -> None:
        if not self.skip_bad_files:
            raise UserInputError(f"{error} (set data.skip_bad_files=true to skip such tiles and count them)")
        self.skipped.append(f"{name}: {error}")

    def _load_tiles(self) -> None:
        """Pair the files, read every header and build every missing mask; bad files stop the run or are
        skipped and counted. Runs in ``prepare_data`` (masks once per node), and in ``setup`` on
        processes where ``prepare_data`` did not run."""
        self.discovery = discover(self.data_dir, self.product)
        report = self.discovery.unpaired_report()
        if report:
            rank_zero_warn(f"SpaceNet {self.data_dir}: unpaired files not used: {report}")
        cache, self.tiles, self.skipped = self.mask_cache(), [], []
        self.tile_positions = {}
        repaired = dropped = 0
        astray: list[str] = []  # label files none of whose geometries touch their tile
        for pair in self.discovery.pairs:
            try:
                info = read_info(pair.image)
                check_bands(self.bands, info)
                labels = cache.ensure(pair, info)
            except UserInputError as error:
                self._bad(pair.tile_id, error)
                continue
            self.tile_positions[pair.tile_id] = len(self.tiles)
            self.tiles.append(Tile(pair, info))
            if labels is not None:
                repaired, dropped = repaired + labels.repaired, dropped + labels.dropped
                if labels.geometries and labels.outside == len(labels.geometries):
                    astray.append(pair.label.name)
        if astray:
            rank_zero_warn(
                f"SpaceNet labels: in {len(astray)} label files no geometry touches its tile, so their masks "
                f"are empty (longitude and latitude swapped, or a wrong crs member?): {', '.join(astray[:5])}"
            )
        if repaired or dropped:
            rank_zero_warn(
                f"SpaceNet labels: {repaired} invalid polygons repaired (shapely.make_valid), {dropped} "
                "features without a usable geometry left out of the masks"
            )
        if self.skipped:
            rank_zero_warn(f"SpaceNet: skipped {len(self.skipped)} bad tiles: {'; '.join(self.skipped[:3])}")
        if not self.tiles:
            raise UserInputError(f"SpaceNet {self.data_dir}: no usable tile ({self.discovery.layout.name})")
        self._check_cities(self.tiles)

    def _check_cities(self, tiles: list[Tile]) -> None:
        if self.city_channels:
            for tile in tiles:
                city_index(tile.pair.tile_id)

    def prepare_data(self) -> None:
        self._load_tiles()

    # ----- splits ----------------------------------------------------------------------------------
    def _sample_rows(self) -> list[ManifestRow]:
        def row(sample: str, tile: Tile, split: str, group: str = "") -> ManifestRow:
            return ManifestRow(
                sample, tile.pair.tile_id, split, group, str(tile.pair.image), str(tile.pair.label)
            )

        if self.split == "report_subtiles":
            names = {
                window.name: tile
                for index, tile in enumerate(self.tiles)
                for window in subtile_windows(index, tile.pair.image.stem, tile.info.height, tile.info.width)
            }
            return [
                row(name, names[name], split) for name, split in report_subtile_split(list(names)).items()
            ]
        count = len(self.tiles)
        if self.split == "geographic":
            groups = ground_groups(
                [tile.info.bounds for tile in self.tiles],
                [str(tile.info.crs) for tile in self.tiles],
                self.block_size,
            )
            splits = geographic_split(groups, self.val_fraction, self.test_fraction, self.seed)
        elif self.split == "kfold":
            groups = list(range(count))
            splits = kfold_split(count, self.folds, self.fold, self.test_fraction, self.seed)
        elif self.split == "random":
            groups, splits = (
                list(range(count)),
                random_split(count, self.val_fraction, self.test_fraction, self.seed),
            )
        else:
            raise UserInputError(
                f"data.split={self.split!r} is not one of random, geographic, kfold, report_subtiles"
            )
        return [
            row(tile.pair.tile_id, tile, split, str(group))
            for tile, split, group in zip(self.tiles, splits, groups, strict=True)
        ]

    def _manifest_rows(self) -> list[ManifestRow]:
        if self.split_manifest is None:
            return self._sample_rows()
        rows = read_manifest(self.split_manifest)
        missing = sorted({row.tile_id for row in rows} - self.tile_positions.keys())
        if missing:
            raise UserInputError(
                f"split manifest {self.split_manifest}: {len(missing)} tiles are not usable in "
                f"{self.data_dir} "
                f"(first: {', '.join(missing[:3])})"
            )
        return rows

    def split_counts(self) -> dict[str, int]:
        return {split: sum(row.split == split for row in self.manifest) for split in (*SPLITS, UNUSED)}

    # ----- normalisation ---------------------------------------------------------------------------
    def _fit_normalization(self) -> None:
        train = sorted({row.tile_id for row in self.manifest if row.split == "train"})
        chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))[
            : self.stats_tiles
        ]
        samples = []
        for position in sorted(chosen.tolist()):
            tile = self.tiles[self.tile_positions[train[position]]]
            full = Window(0, 0, tile.info.width, tile.info.height)
            pixels, valid = read_window(tile.pair.image, self.bands, full), read_valid(tile.pair.image, full)
            strided = (slice(None), slice(None, None, STATS_STRIDE), slice(None, None, STATS_STRIDE))
            samples.append(pixels[strided][:, valid[strided[1:]]])
        self.normalization.fit(np.concatenate(samples, axis=1))
        rank_zero_info(
            f"SpaceNet normalisation '{self.normalization.method}' from {len(samples)} train tiles: "
            f"{self.normalization.state()}"
        )

    # ----- Lightning hooks -------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.manifest:
            return
        if not self.tiles:
            self._load_tiles()
        self.manifest = self._manifest_rows()
        rank_zero_info(
            f"SpaceNet {self.discovery.layout.name} ({self.discovery.product}): {self.split_counts()}"
        )
        if self.normalization.needs_statistics:
            self._fit_normalization()
        self._warn_unlabelled_splits()
        self._write_run_records()

    def _warn_unlabelled_splits(self) -> None:
        """Warn when a train or val split has no labelled pixel (its metrics would say nothing)."""
        cache = self.mask_cache()
        for split in ("train", "val"):
            tiles = [self.tiles[position] for position in sorted(set(self._split_tiles(split)))]
            if tiles and not any(self._has_labelled_pixel(cache, tile) for tile in tiles):
                rank_zero_warn(
                    f"SpaceNet: the {split} split has no labelled pixel in its {len(tiles)} tiles (labels "
                    "outside their tiles, or only no-data?): its losses and metrics say nothing"
                )

    def _has_labelled_pixel(self, cache: MaskCache, tile: Tile) -> bool:
        mask = cache.read(tile.pair, Window(0, 0, tile.info.width, tile.info.height))
        return bool(np.any((mask != BACKGROUND) & (mask != self.ignore_index)))

    def _write_run_records(self) -> None:
        trainer = self.trainer
        log_dir = trainer.log_dir if trainer is not None else None  # a broadcast: every rank makes it once
        if log_dir is None:
            return
        if trainer.is_global_zero:
            run_dir = Path(log_dir)
            write_manifest(run_dir / MANIFEST_NAME, self.manifest)
            (run_dir / NORMALIZATION_NAME).write_text(json.dumps(self.normalization.state(), indent=2))

    def teardown(self, stage: str) -> None:
        if self.skipped:
            rank_zero_warn(
                f"SpaceNet: {len(self.skipped)} bad tiles were skipped in this run: "
                f"{'; '.join(self.skipped[:3])}"
            )

    def state_dict(self) -> dict:
        return {**super().state_dict(), "normalization": self.normalization.state()}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.normalization.load(state_dict["normalization"])

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, masks = batch
        batch = (images, masks.long())  # the loaders move uint8 masks; losses and metrics take int64
        trainer = self.trainer
        if not self._range_checked and trainer is not None and trainer.training:
            self._range_checked = True
            line, outside = self.normalization.range_message(float(images.min()), float(images.max()))
            (rank_zero_warn if outside else rank_zero_info)(line)
        return batch

    # ----- datasets --------------------------------------------------------------------------------
    def reader(self) -> TileReader:
        return TileReader(
            self.tiles,
            self.bands,
            self.normalization,
            self.mask_cache(),
            self.ignore_index,
            self.city_channels,
        )

    def _tile_windows(self, tile: int, info: RasterInfo) -> list[TileWindow]:
        """The evaluation windows of a tile: the whole tile padded, or overlapping windows."""
        if self.eval_tiling == "windows":
            return sliding_windows(tile, info.height, info.width, self.window_size, self.window_overlap)
        if self.eval_tiling == "pad":
            return [whole_tile(tile, info.height, info.width)]
        raise UserInputError(f"data.eval_tiling={self.eval_tiling!r} is not one of pad, windows")

    def _centre_crop(self, tile: int) -> TileWindow:
        info = self.tiles[tile].info
        if self.crop_size is None:
            return whole_tile(tile, info.height, info.width)
        height, width = min(self.crop_size, info.height), min(self.crop_size, info.width)
        row, col = (info.height - height) // 2, (info.width - width) // 2
        return TileWindow(tile, row, col, height, width, self.crop_size, self.crop_size)

    def _subtiles(self, rows: list[ManifestRow]) -> list[TileWindow]:
        windows = {}
        for tile in sorted({self.tile_positions[row.tile_id] for row in rows}):
            info = self.tiles[tile].info
            for window in subtile_windows(tile, self.tiles[tile].pair.image.stem, info.height, info.width):
                windows[window.name] = window
        return [windows[row.sample] for row in rows]

    def _split_rows(self, split: str) -> list[ManifestRow]:
        return [row for row in self.manifest if row.split == split]

    def _split_tiles(self, split: str) -> list[int]:
        return [self.tile_positions[row.tile_id] for row in self._split_rows(split)]

    def _has_subtiles(self, split: str) -> bool:
        """Whether ``split``'s samples are named sub-tiles (Lim et al.'s split, or a manifest of one)."""
        return any(row.sample != row.tile_id for row in self._split_rows(split))

    def _windows(self, split: str, training: bool) -> list[TileWindow]:
        """Fixed windows of ``split``: Lim et al.'s sub-tiles; whole or windowed tiles for val and test (and
        for training without ``crop_size``); centre crops of train tiles for evaluation subsets."""
        if self._has_subtiles(split):
            return self._subtiles(self._split_rows(split))
        tiles = self._split_tiles(split)
        if split == "train" and not training and self.crop_size is not None:
            return [self._centre_crop(tile) for tile in tiles]
        return self._full_tile_windows(self.tiles, tiles)

    def _full_tile_windows(self, tiles: list[Tile], positions: list[int]) -> list[TileWindow]:
        windows = [window for p in positions for window in self._tile_windows(p, tiles[p].info)]
        return common_padding(windows)

    def dataset(self, split: str, augment: bool = True, loader_samples: bool = False) -> SpaceNetDataset:
        """The ``split`` ('train', 'val' or 'test') as a dataset. 'train' with ``augment`` is the training
        set (random crops, augmentation); otherwise fixed windows without augmentation. ``loader_samples``:
        samples for this module's loaders (:class:`SpaceNetDataset`; ``on_after_batch_transfer`` widens
        their masks)."""
        if split not in SPLITS:
            raise UserInputError(f"split {split!r} is not one of {SPLITS}")
        self.setup()
        source = f"spacenet:{self.data_dir}:{split}"
        if not (split == "train" and augment):
            windows = self._windows(split, training=False)
            return SpaceNetDataset(self.reader(), source, windows=windows, loader_samples=loader_samples)
        if self.crop_size is None or self._has_subtiles(split):
            windows = self._windows(split, training=True)
            return SpaceNetDataset(self.reader(), source, windows=windows, augmentation=self.augmentation,
                                   loader_samples=loader_samples)  # fmt: skip
        return SpaceNetDataset(
            self.reader(),
            source,
            tiles=self._split_tiles("train"),
            crop_size=self.crop_size,
            reject_empty=self.reject_empty_crops,
            augmentation=self.augmentation,
            loader_samples=loader_samples,
        )

    def full_tile_dataset(self, split: str) -> SpaceNetDataset:
        """Every tile of ``split`` once, whole (``eval_tiling: pad``) or as overlapping windows, without
        augmentation, whatever the split's samples are (crops, Lim et al.'s sub-tiles): what full-tile
        evaluation predicts and stitches back together."""
        self.setup()
        tiles = list(dict.fromkeys(self._split_tiles(split)))
        windows = self._full_tile_windows(self.tiles, tiles)
        return SpaceNetDataset(self.reader(), f"spacenet:{self.data_dir}:{split}:tiles", windows=windows)

    def truth_geometries(self, tile: int) -> list[BaseGeometry]:
        """The label polygons (buildings) or lines (roads) of tile ``tile`` (a position in the tile list) in
        pixel coordinates, one per feature, as SpaceNet's truth CSVs have them."""
        pair, info = self.tiles[tile].pair, self.tiles[tile].info
        labels = read_labels(pair.label, info.crs, LINEAR if self.target == "roads" else POLYGONAL)
        return [apply_affine(shape, ~info.transform) for shape in labels.geometries]

    def evaluation_subset(
        self, split: str, size: int | None = None, per_class: int | None = None, seed: int = 0
    ) -> SpaceNetDataset:
        """A fixed subset of ``split`` without augmentation for callbacks: ``size`` windows drawn with
        ``seed`` (all when None), in order. ``per_class`` does not apply to segmentation."""
        if per_class is not None:
            raise UserInputError("per_class subsets are for classification; give a size for SpaceNet")
        full = self.dataset(split, augment=False)
        if size is None:
            return full
        if size > len(full):
            raise UserInputError(f"an evaluation subset of {size} windows exceeds the {len(full)} of {split}")
        chosen = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))[:size].sort().values
        return SpaceNetDataset(full.reader, full.source, windows=[full.windows[i] for i in chosen.tolist()])

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Images as the model sees them, in [0, 1] for display."""
        return torch.from_numpy(self.normalization.to_display(images.detach().cpu().numpy())).to(
            images.device
        )

    def from_display(self, images: torch.Tensor) -> torch.Tensor:
        """Display-space images in [0, 1] as the model sees them (the inverse of ``denormalize``;
        differentiable)."""
        return self.normalization.from_display(images)

    def _loader(self, dataset: SpaceNetDataset, batch_size: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_samples if dataset.loader_samples else None,
        )

    def train_dataloader(self) -> StatefulDataLoader:
        dataset = self.dataset("train", loader_samples=True)
        return shuffled_loader(dataset, self.batch_size, self.num_workers, collate_fn=collate_samples)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val", loader_samples=True), self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test", loader_samples=True), self.eval_batch_size)

    def predict_dataset(self) -> SpaceNetDataset:
        """The ``predict_files`` GeoTIFFs (no labels: masks are all ``ignore_index``), or the test split."""
        if not self.predict_files:
            return self.dataset("test")
        self.setup()
        tiles = []
        paths = expand_image_paths(self.predict_files)
        for path, name in zip(paths, output_names(paths), strict=True):
            info = read_info(path)
            check_bands(self.bands, info)
            tiles.append(Tile(TilePair(name, path, path), info))
        self._check_cities(tiles)
        reader = TileReader(
            tiles, self.bands, self.normalization, None, self.ignore_index, self.city_channels
        )
        windows = self._full_tile_windows(tiles, list(range(len(tiles))))
        return SpaceNetDataset(reader, "predict_files", windows=windows)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_dataset(), self.eval_batch_size)


def common_padding(windows: list[TileWindow]) -> list[TileWindow]:
    """``windows`` padded to the largest padded size among them, so tiles of different sizes batch."""
    if not windows:
        return windows
    height = max(window.padded_height for window in windows)
    width = max(window.padded_width for window in windows)
    return [replace(window, padded_height=height, padded_width=width) for window in windows]
