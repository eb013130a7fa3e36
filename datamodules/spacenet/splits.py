"""Train/val/test splits of SpaceNet tiles, written to and read from a manifest CSV.

- ``random``: whole tiles, seeded: sub-tiles of one tile never land in two splits, but overlapping
  tiles (SpaceNet 6 follows the SAR strips, so the same ground is in several tiles) can.
- ``geographic``: tiles grouped by ``block_size`` blocks of their centre, and groups whose footprints
  overlap merged, so no two splits share ground (the lesson of the SpaceNet 6 winners).
- ``kfold``: seeded test tiles as ``random`` draws them, then scikit-learn's shuffled ``KFold`` of the
  rest, one fold as val (selim_sef's SpaceNet 3 split, fold 0 of 4; Macura's fork used 2 folds).
- ``report_subtiles``: Lim et al.'s sub-tile split exactly (numpy seed 42, 70 % / halves / sorted 70-30).
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
import torch
from sklearn.model_selection import KFold

from lightning_app.errors import UserInputError

SPLITS = ("train", "val", "test")
UNUSED = "unused"
MANIFEST_COLUMNS = ("sample", "tile_id", "split", "group", "image", "label")


@dataclass(frozen=True)
class ManifestRow:
    """One sample unit of a split: a whole tile (``sample`` = tile id) or a named sub-tile."""

    sample: str
    tile_id: str
    split: str
    group: str
    image: str
    label: str


def _counts(total: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UserInputError(
            f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} must be in [0, 1) "
            "and sum to less than 1"
        )
    val, test = round(total * val_fraction), round(total * test_fraction)
    if total - val - test < 1:
        raise UserInputError(
            f"{total} tiles are too few for val_fraction={val_fraction}, test={test_fraction}"
        )
    return val, test


def random_split(count: int, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """The split of each of ``count`` tiles, drawn with a seeded permutation."""
    val, test = _counts(count, val_fraction, test_fraction)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    splits = ["train"] * count
    for position, tile in enumerate(order):
        if position < test:
            splits[tile] = "test"
        elif position < test + val:
            splits[tile] = "val"
    return splits


def kfold_split(count: int, folds: int, fold: int, test_fraction: float, seed: int) -> list[str]:
    """The split of each of ``count`` tiles: test drawn as :func:`random_split` draws it, then fold
    ``fold`` of ``KFold(folds, shuffle=True, random_state=seed)`` over the other tiles is val."""
    splits = random_split(count, 0.0, test_fraction, seed)
    rest = [tile for tile, split in enumerate(splits) if split != "test"]
    if not 2 <= folds <= len(rest) or not 0 <= fold < folds:
        raise UserInputError(
            f"data.folds={folds} must be 2..{len(rest)} (the tiles outside test) and data.fold={fold} in "
            f"0..{folds - 1}"
        )
    _, val = list(KFold(folds, shuffle=True, random_state=seed).split(rest))[fold]
    for position in val:
        splits[rest[position]] = "val"
    return splits


def ground_groups(
    bounds: list[tuple[float, float, float, float]], crs_names: list[str], block_size: float
) -> list[int]:
    """A group number per tile: tiles whose centres share a ``block_size`` block, or whose footprints
    overlap (touching edges do not count), are in one group. Tiles in different CRSs never overlap."""
    if block_size <= 0:
        raise UserInputError(f"data.block_size={block_size} must be positive (metres, or CRS units)")
    parent = list(range(len(bounds)))

    def root(tile: int) -> int:
        while parent[tile] != tile:
            parent[tile] = parent[parent[tile]]
            tile = parent[tile]
        return tile

    def join(a: int, b: int) -> None:
        parent[root(a)] = root(b)

    first_in_block: dict[tuple, int] = {}
    for tile, (left, bottom, right, top) in enumerate(bounds):
        block = (crs_names[tile], (left + right) // 2 // block_size, (bottom + top) // 2 // block_size)
        join(tile, first_in_block.setdefault(block, tile))
    boxes = np.array([shapely.box(*b) for b in bounds], dtype=object)
    for crs in set(crs_names):
        members = np.array([tile for tile, name in enumerate(crs_names) if name == crs])
        tree = shapely.STRtree(boxes[members])
        pairs = tree.query(boxes[members], predicate="overlaps").T.tolist()
        pairs += tree.query(boxes[members], predicate="contains").T.tolist()
        for a, b in pairs:
            join(int(members[a]), int(members[b]))
    roots = [root(tile) for tile in range(len(bounds))]
    numbering = {value: index for index, value in enumerate(dict.fromkeys(roots))}
    return [numbering[value] for value in roots]


def geographic_split(groups: list[int], val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """Whole groups in a seeded order go to test, then val, until each holds its share of tiles; the rest
    to train."""
    val, test = _counts(len(groups), val_fraction, test_fraction)
    group_ids = sorted(set(groups))
    order = torch.randperm(len(group_ids), generator=torch.Generator().manual_seed(seed)).tolist()
    sizes = np.bincount(groups)
    assignment, filled = {}, {"test": 0, "val": 0}
    for position in order:
        group = group_ids[position]
        split = next((s for s, want in (("test", test), ("val", val)) if filled[s] < want), "train")
        if split != "train":
            filled[split] += int(sizes[group])
        assignment[group] = split
    return [assignment[group] for group in groups]


def report_subtile_split(names: list[str]) -> dict[str, str]:
    """Lim et al.'s split of its sub-tile names: sort; numpy seed 42 draws 70 % as train_all;
    re-seeded 42, half of train_all then half of the rest are kept; the sorted first 70 % of the kept
    train names are train and the last 30 % val. For 3,401 tiles: 13,331 / 5,714 / 8,162 of 54,416."""
    ordered = sorted(names)
    total = len(ordered)
    rng = np.random.RandomState(42)
    train_all = np.sort(rng.choice(np.arange(total), int(total * 0.7), replace=False))
    test_all = np.setdiff1d(np.arange(total), train_all)
    rng = np.random.RandomState(42)
    kept_train = np.sort(rng.choice(train_all, int(len(train_all) / 2), replace=False))
    kept_test = np.sort(rng.choice(test_all, int(len(test_all) / 2), replace=False))
    train_names = sorted(ordered[i] for i in kept_train)
    cut = int(len(train_names) * 0.7)
    splits = dict.fromkeys(ordered, UNUSED)
    splits.update(dict.fromkeys(train_names[:cut], "train"))
    splits.update(dict.fromkeys(train_names[cut:], "val"))
    splits.update(dict.fromkeys((ordered[i] for i in kept_test), "test"))
    return splits


def write_manifest(path: Path, rows: list[ManifestRow]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows([getattr(row, column) for column in MANIFEST_COLUMNS] for row in rows)


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """The rows of a manifest written by :func:`write_manifest`; an error naming the file and row."""
    path = Path(path)
    try:
        with path.open(newline="") as file:
            reader = csv.DictReader(file)
            missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise UserInputError(f"split manifest {path}: missing columns {sorted(missing)}")
            rows = [ManifestRow(**{column: line[column] for column in MANIFEST_COLUMNS}) for line in reader]
    except OSError as error:
        raise UserInputError(f"cannot read split manifest {path}: {error}") from error
    for number, row in enumerate(rows, start=2):
        if row.split not in (*SPLITS, UNUSED):
            raise UserInputError(
                f"split manifest {path} row {number}: split {row.split!r} is not one of {SPLITS}"
            )
    return rows
