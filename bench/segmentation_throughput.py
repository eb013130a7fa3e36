"""Segmentation throughput: training samples/s of Lim et al.'s U-Net ResNet-18 at 224 px under ``bf16-mixed``
against ``32`` precision, and the SpaceNet evaluator's polygons/s against only parsing its CSVs.

- Training: ``SegmentationModule`` + ``SMPNet`` as in configs/spacenet6_unet_resnet18.yaml (group-norm
  decoder, Jaccard loss, Adam), batches of random 224 px images and masks held in memory, run through
  ``Trainer.fit``; samples/s over the steps after ``--warmup``.
- Evaluator: a synthetic 1,000-image truth CSV (``--buildings`` squares per image) and a proposal CSV of
  the same squares shifted by 1 to 4 px (matches and misses) plus one false positive per image; time
  of ``python -m lightning_app.evaluate spacenet-buildings``' scoring (read both CSVs, match every image)
  against the baseline of reading both CSVs only.

    python bench/segmentation_throughput.py [--steps 12] [--batch 8] [--images 1000] [--buildings 20]
"""

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import shapely
import torch
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datamodules.spacenet.building_score import PROPOSAL_COLUMNS, TRUTH_COLUMNS, read_polygon_csv  # noqa: E402
from lightning_app.evaluate import score  # noqa: E402
from models.nets.smp_net import SMPNet  # noqa: E402
from models.segmentation import SegmentationModule  # noqa: E402

SIZE = 224


class StepTimer(pl.Callback):
    """Wall time of every training step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self.start)


def training_samples_per_second(precision: str, steps: int, warmup: int, batch: int) -> float:
    torch.manual_seed(0)
    images = torch.rand(batch * (steps + warmup), 3, SIZE, SIZE)
    masks = (torch.rand(len(images), SIZE, SIZE) > 0.8).long()
    loader = DataLoader(TensorDataset(images, masks), batch_size=batch)
    net = SMPNet(decoder_norm="groupnorm", norm_groups=8)
    module = SegmentationModule(net, loss=[{"name": "jaccard", "smooth": 1e-5}])
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator="cpu",
        precision=precision,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, loader)
    return batch / float(np.mean(timer.times[warmup:]))


def square(row: float, col: float, side: float) -> str:
    return shapely.box(col, row, col + side, row + side).wkt


def write_csvs(folder: Path, images: int, buildings: int) -> tuple[Path, Path, int]:
    rng = np.random.default_rng(0)
    truth, proposal = folder / "truth.csv", folder / "proposal.csv"
    polygons = 0
    with truth.open("w", newline="") as t, proposal.open("w", newline="") as p:
        truth_rows, proposal_rows = csv.writer(t), csv.writer(p)
        truth_rows.writerow(TRUTH_COLUMNS)
        proposal_rows.writerow(PROPOSAL_COLUMNS)
        for image in range(images):
            image_id = f"AOI_11_Rotterdam_img{image}"
            for number in range(buildings):
                row, col = 40 * (number // 5), 40 * (number % 5)
                shift = rng.integers(1, 5)
                truth_rows.writerow([image_id, number, square(row, col, 20)])
                proposal_rows.writerow([image_id, number, square(row + shift, col + shift, 20), rng.random()])
            proposal_rows.writerow([image_id, buildings, square(600, 600, 15), 0.1])
            polygons += 2 * buildings + 1
    return truth, proposal, polygons


def evaluator_polygons_per_second(images: int, buildings: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        truth, proposal, polygons = write_csvs(Path(folder), images, buildings)
        start = time.perf_counter()
        read_polygon_csv(truth, TRUTH_COLUMNS, strict=False)
        read_polygon_csv(proposal, PROPOSAL_COLUMNS, strict=False)
        parse = time.perf_counter() - start
        start = time.perf_counter()
        images_scored, _ = score(truth, proposal, miniou=0.5, min_area=0.0, strict=False)
        scoring = time.perf_counter() - start
    assert len(images_scored) == images
    return polygons / scoring, polygons / parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--buildings", type=int, default=20)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rates = {
        p: training_samples_per_second(p, args.steps, args.warmup, args.batch) for p in ("32", "bf16-mixed")
    }
    for precision, rate in rates.items():
        print(f"U-Net ResNet-18 {SIZE} px, batch {args.batch}, precision {precision}: {rate:.2f} samples/s")
    print(f"bf16-mixed / 32: {rates['bf16-mixed'] / rates['32']:.2f}")
    scoring, parsing = evaluator_polygons_per_second(args.images, args.buildings)
    print(
        f"evaluator, {args.images} images: scoring {scoring:,.0f} polygons/s, CSV parsing only {parsing:,.0f}"
    )
    print(f"scoring / parsing: {scoring / parsing:.2f}")


if __name__ == "__main__":
    main()
