"""The README's road figure: SpaceNetRoadEvaluation's TensorBoard panels for a synthetic SpaceNet 3 tile.

    python docs/road_figure.py --out docs/figures/road_graphs_apls.png

Writes a 1,300 x 1,300 px, 0.3 m, 8-band tile in SpaceNet 3's layout (the road network of
``bench/apls_speed.py`` with roads every 60 m: a jittered grid, a curved road crossing it without
junctions (bridges), six roads broken for 6 m, drawn 2 m wide into noisy imagery) with its GeoJSON
labels, validates a stand-in "network" (a 9 px mean of band 0 as the road logit) with the callback
through ``Trainer.validate`` and saves the figure it logs.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from affine import Affine
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.apls_speed import PIXEL, SIZE, probability_map, road_lines  # noqa: E402
from callbacks.spacenet_roads import SpaceNetRoadEvaluation  # noqa: E402
from datamodules.spacenet import SpaceNetDataModule  # noqa: E402
from datamodules.spacenet.geo_output import apply_affine  # noqa: E402
from models.segmentation import SegmentationModule  # noqa: E402
from tests.spacenet_fixtures import ORIGIN, write_geojson, write_tile  # noqa: E402


class MeanOfBandZero(nn.Module):
    """A stand-in road network: the 9 px mean of band 0 as the road logit."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(12.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (nn.functional.avg_pool2d(x[:, :1], 9, stride=1, padding=4) - 0.5)


def write_data(folder: Path) -> Path:
    """Two copies of the tile (one to validate on, one for the train split the data module needs)."""
    rng = np.random.default_rng(0)
    lines = road_lines(60.0, rng)
    roads = probability_map(lines, 6, rng)
    aoi = folder / "AOI_2_Vegas"
    bands = (200 + 1600 * roads[None] + rng.normal(0, 60, (8, SIZE, SIZE))).clip(1, 2047).astype(np.uint16)
    to_map = Affine(1, 0, ORIGIN[0], 0, -1, ORIGIN[1])  # the lines are in metres, y down from the corner
    for tile in (1, 2):
        transform = Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1])
        write_tile(aoi / "PS-MS" / f"SN3_roads_train_AOI_2_Vegas_PS-MS_img{tile}.tif", bands, transform)
        write_geojson(aoi / "geojson_roads" / f"SN3_roads_train_AOI_2_Vegas_geojson_roads_img{tile}.geojson",
                      [apply_affine(line, to_map) for line in lines])  # fmt: skip
    return aoi


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="docs/figures/road_graphs_apls.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        aoi = write_data(Path(folder))
        data = SpaceNetDataModule(aoi, cache_dir=Path(folder) / "cache", max_value=2047, val_fraction=0.5,
                                  test_fraction=0.0)  # fmt: skip
        logger = pl.loggers.TensorBoardLogger(folder, name="figure")
        trainer = pl.Trainer(accelerator="cpu", logger=logger, enable_progress_bar=False,
                             callbacks=[SpaceNetRoadEvaluation(panels=1)])  # fmt: skip
        result = trainer.validate(SegmentationModule(MeanOfBandZero()), datamodule=data, verbose=False)[0]
        events = EventAccumulator(trainer.log_dir, size_guidance={"images": 0})
        events.Reload()
        (image,) = events.Images("Validation/road_graphs")
        Path(args.out).write_bytes(image.encoded_image_string)
    print(f"APLS {result['val/apls']:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
