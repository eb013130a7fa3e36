"""Tiles per second through the SpaceNet DataModule against plain rasterio reads, in the same run.

Writes ``--tiles`` synthetic uint16 GeoTIFFs with their labels (EPSG:4326 GeoJSON) and times epochs of
``train_dataloader()`` (random 512 px crops, the default flips/rotations, ``--workers`` workers, batch 4):

- ``--target buildings``: 900 x 900 4-band tiles in SpaceNet 6's PS-RGBNIR layout, 40 buildings each;
- ``--target roads``: 1,300 x 1,300 8-band tiles in SpaceNet 3's PS-MS layout, 12 roads each (2 m
  buffer), every band read;

- cold cache: ``prepare_data`` + ``setup`` (reading every header, rasterising every mask) + the first
  epoch (workers starting);
- warm cache: later epochs (masks read from the cache, workers running);
- baseline: a Dataset that only opens each tile and reads a random 512 px window of its bands as float32
  with rasterio, through the same DataLoader settings.

Warm epochs of the two alternate ``--rounds`` times (the page cache and the machine's load then affect
both alike); the table gives the median epoch of each.

    python bench/spacenet_loading.py [--target buildings|roads] [--tiles 64] [--workers 2] [--rounds 9]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import shapely
import torch
from rasterio.windows import Window
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loader_timing import alternating_medians, epoch_seconds  # noqa: E402
from datamodules.spacenet import SpaceNetDataModule  # noqa: E402
from tests.spacenet_fixtures import SN6_STEM, pixel_box, tile_transform, write_geojson, write_tile  # noqa: E402

CROP, BATCH = 512, 4
TARGETS = {  # tile size, bands, AOI folder
    "buildings": (900, 4, "AOI_11_Rotterdam"),
    "roads": (1300, 8, "AOI_2_Vegas"),
}


def write_tiles(aoi: Path, count: int, target: str) -> list[Path]:
    size, bands, _ = TARGETS[target]
    rng = np.random.default_rng(0)
    images = []
    for tile in range(count):
        transform = tile_transform(0, tile * size)
        pixels = rng.integers(1, 2048, (bands, size, size), dtype=np.uint16)
        if target == "buildings":
            image = aoi / "PS-RGBNIR" / f"{SN6_STEM.format(product='PS-RGBNIR', tile=tile)}.tif"
            label = aoi / "geojson_buildings" / f"{SN6_STEM.format(product='Buildings', tile=tile)}.geojson"
            corners = rng.integers(0, size - 40, (40, 2))
            shapes = [
                pixel_box(transform, int(r), int(c), 12 + int(r) % 20, 12 + int(c) % 20) for r, c in corners
            ]
        else:
            image = aoi / "PS-MS" / f"SN3_roads_train_AOI_2_Vegas_PS-MS_img{tile}.tif"
            label = aoi / "geojson_roads" / f"SN3_roads_train_AOI_2_Vegas_geojson_roads_img{tile}.geojson"
            ends = rng.integers(0, size, (12, 2, 2))
            shapes = [shapely.LineString([transform * tuple(end) for end in pair]) for pair in ends]
        images.append(write_tile(image, pixels, transform))
        write_geojson(label, shapes)
    return images


class PlainWindows(Dataset):
    """The baseline: one random 512 px window of all bands per tile, read with rasterio."""

    def __init__(self, images: list[Path], size: int) -> None:
        self.images = images
        self.size = size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        row, col = torch.randint(self.size - CROP + 1, (2,)).tolist()
        with rasterio.open(self.images[index]) as source:
            return torch.from_numpy(source.read(window=Window(col, row, CROP, CROP), out_dtype="float32"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", choices=sorted(TARGETS), default="buildings")
    parser.add_argument("--tiles", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    torch.manual_seed(0)
    size, bands, aoi_name = TARGETS[args.target]
    with tempfile.TemporaryDirectory() as folder:
        aoi = Path(folder) / aoi_name
        images = write_tiles(aoi, args.tiles, args.target)
        plain_loader = DataLoader(PlainWindows(images, size), batch_size=BATCH, shuffle=True,
                                  num_workers=args.workers, persistent_workers=True)  # fmt: skip
        epoch_seconds(plain_loader)  # warm the page cache and start the workers
        start = time.perf_counter()
        data = SpaceNetDataModule(aoi, cache_dir=Path(folder) / "cache", crop_size=CROP, max_value=2047,
                                  batch_size=BATCH, num_workers=args.workers, val_fraction=0.0,
                                  test_fraction=0.0)  # fmt: skip
        data.prepare_data()
        data.setup("fit")
        loader = data.train_dataloader()
        epoch_seconds(loader)
        cold = time.perf_counter() - start
        plain_s, warm_s = alternating_medians(plain_loader, loader, args.rounds)
    print(f"{args.target}: {args.tiles} tiles {size}x{size}x{bands} uint16, random {CROP} crops, "
          f"{args.workers} workers, batch {BATCH}, median of {args.rounds} alternating warm "
          "epochs")  # fmt: skip
    print(f"plain rasterio windows : {args.tiles / plain_s:8.1f} tiles/s")
    for name, seconds in (("DataModule, cold cache", cold), ("DataModule, warm cache", warm_s)):
        print(f"{name}: {args.tiles / seconds:8.1f} tiles/s   ratio to plain reads {plain_s / seconds:.2f}")


if __name__ == "__main__":
    main()
