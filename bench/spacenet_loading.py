"""Tiles per second through the SpaceNet DataModule against plain rasterio reads, in the same run.

Writes ``--tiles`` synthetic 900 x 900 4-band uint16 GeoTIFFs (SpaceNet 6 PS-RGBNIR layout, 40 buildings
each, labels in EPSG:4326) and times one epoch of ``train_dataloader()`` (random 512 px crops, the
default flips/rotations, 2 workers, batch 4):

- cold cache: ``prepare_data`` + ``setup`` (reading every header, rasterising every mask) + the first
  epoch (workers starting);
- warm cache: the second epoch (masks read from the cache, workers running);
- baseline: a Dataset that only opens each tile and reads a random 512 px window of its 4 bands with
  rasterio, through the same DataLoader settings, second epoch.

    python bench/spacenet_loading.py [--tiles 64] [--workers 2]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datamodules.spacenet import SpaceNetDataModule  # noqa: E402
from tests.spacenet_fixtures import SN6_STEM, pixel_box, tile_transform, write_geojson, write_tile  # noqa: E402

SIZE, CROP, BANDS, BATCH = 900, 512, 4, 4


def write_tiles(aoi: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    images = []
    for tile in range(count):
        transform = tile_transform(0, tile * SIZE)
        pixels = rng.integers(1, 2048, (BANDS, SIZE, SIZE), dtype=np.uint16)
        image = aoi / "PS-RGBNIR" / f"{SN6_STEM.format(product='PS-RGBNIR', tile=tile)}.tif"
        images.append(write_tile(image, pixels, transform))
        corners = rng.integers(0, SIZE - 40, (40, 2))
        buildings = [
            pixel_box(transform, int(r), int(c), 12 + int(r) % 20, 12 + int(c) % 20) for r, c in corners
        ]
        label = aoi / "geojson_buildings" / f"{SN6_STEM.format(product='Buildings', tile=tile)}.geojson"
        write_geojson(label, buildings)
    return images


class PlainWindows(Dataset):
    """The baseline: one random 512 px window of all bands per tile, read with rasterio."""

    def __init__(self, images: list[Path]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        row, col = torch.randint(SIZE - CROP + 1, (2,)).tolist()
        with rasterio.open(self.images[index]) as source:
            return torch.from_numpy(source.read(window=Window(col, row, CROP, CROP)).astype(np.float32))


def epoch_seconds(loader: DataLoader) -> float:
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def datamodule_seconds(aoi: Path, cache: Path, workers: int) -> tuple[float, float, int]:
    """Seconds of the first epoch including ``prepare_data`` and ``setup`` (cold cache), seconds of a
    second epoch (warm cache), and the tiles per epoch."""
    start = time.perf_counter()
    data = SpaceNetDataModule(
        aoi,
        cache_dir=cache,
        crop_size=CROP,
        normalization="fixed",
        max_value=2047,
        batch_size=BATCH,
        num_workers=workers,
        val_fraction=0.0,
        test_fraction=0.0,
    )
    data.prepare_data()
    data.setup("fit")
    loader = data.train_dataloader()
    epoch_seconds(loader)
    cold = time.perf_counter() - start
    return cold, epoch_seconds(loader), len(loader.dataset)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiles", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        aoi = Path(folder) / "AOI_11_Rotterdam"
        images = write_tiles(aoi, args.tiles)
        plain_loader = DataLoader(
            PlainWindows(images),
            batch_size=BATCH,
            shuffle=True,
            num_workers=args.workers,
            persistent_workers=True,
        )
        epoch_seconds(plain_loader)  # warm the page cache and start the workers
        plain = epoch_seconds(plain_loader)
        cold, warm, tiles = datamodule_seconds(aoi, Path(folder) / "cache", args.workers)
    print(f"{args.tiles} tiles 900x900x4 uint16, random {CROP} crops, {args.workers} workers, batch {BATCH}")
    print(f"plain rasterio windows : {tiles / plain:8.1f} tiles/s")
    for name, seconds in (("DataModule, cold cache", cold), ("DataModule, warm cache", warm)):
        print(f"{name}: {tiles / seconds:8.1f} tiles/s   ratio to plain reads {plain / seconds:.2f}")


if __name__ == "__main__":
    main()
