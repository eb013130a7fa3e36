"""Images per second through ImageFolderDataModule against torchvision's ``ImageFolder``, same run.

Writes ``--images`` JPEGs (300 x 260 px, in ``--classes`` class folders) and times epochs of the data
module's training loader (RandomResizedCrop to 224, horizontal flip, resize, tensor, ImageNet
normalisation; batch 32, ``--workers`` workers) against ``torchvision.datasets.ImageFolder`` with the
very same transform object through a plain shuffling DataLoader. Warm epochs alternate ``--rounds``
times; the medians are compared.

    python bench/image_folder_loading.py [--images 640] [--classes 8] [--workers 2] [--rounds 9]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loader_timing import alternating_medians, epoch_seconds  # noqa: E402
from datamodules.image_folder import ImageFolderDataModule  # noqa: E402

BATCH = 32


def write_images(root: Path, count: int, classes: int) -> None:
    rng = np.random.default_rng(0)
    for index in range(count):
        folder = root / f"class_{index % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (260, 300, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        write_images(Path(folder), args.images, args.classes)
        data = ImageFolderDataModule(folder, image_size=224, val_fraction=0.0, test_fraction=0.0,
                                     batch_size=BATCH, num_workers=args.workers)  # fmt: skip
        ours = data.train_dataloader()
        theirs = DataLoader(ImageFolder(folder, transform=data.transform(augment=True)), batch_size=BATCH,
                            shuffle=True, num_workers=args.workers, persistent_workers=True)  # fmt: skip
        epoch_seconds(ours), epoch_seconds(theirs)  # start the workers, warm the page cache
        theirs_s, ours_s = alternating_medians(theirs, ours, args.rounds)
    print(f"{args.images} JPEGs 300x260 -> 224 px, batch {BATCH}, {args.workers} workers, median of "
          f"{args.rounds} alternating epochs")  # fmt: skip
    print(f"torchvision ImageFolder : {args.images / theirs_s:8.1f} images/s")
    print(f"ImageFolderDataModule   : {args.images / ours_s:8.1f} images/s   ratio {theirs_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
