"""Checksums that tell an intact LCA store from a damaged one (cut short, overwritten, bit-flipped).

At every flush the writer appends one row to ``checks/flushes``: the step rows and dense rows written so
far, the CRC-32 of the running totals, and the CRC-32 of every per-step and dense dataset up to there
(running: a flush hashes only its new rows). A reader recomputes them and refuses a store that
disagrees, saying which datasets are damaged and up to which step the records are intact.

HDF5's own end-of-file check is skipped by the single-writer/multiple-reader mode the store is read in,
so a reader first compares the file's length with the end-of-file address in its superblock.
"""

import json
import struct
import warnings
import zlib
from pathlib import Path

import h5py
import numpy as np

from lightning_app.errors import UserInputError

TOTALS = ("lca", "helped", "hurt", "zero", "histogram", "steps")
ROWS, DENSE_ROWS, TOTALS_CRC = 0, 1, 2  # the first columns of a checks row; one CRC per dataset follows
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class DamagedStore(UserInputError):
    """A store whose content disagrees with its checksums or its own length."""


def crc(array: np.ndarray, previous: int = 0) -> int:
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8), previous)


def totals_crc(totals: dict[str, np.ndarray]) -> int:
    value = 0
    for name in TOTALS:
        value = crc(np.asarray(totals[name]), value)
    return value


def state_crc(state: dict) -> int:
    """CRC-32 of a checkpoint entry (strings, numbers, tensors and nested entries), in key order."""
    value = 0
    for key in sorted(state):
        item = state[key]
        if isinstance(item, dict):
            item = state_crc(item)
        content = item.cpu().numpy() if hasattr(item, "cpu") else np.frombuffer(repr(item).encode(), np.uint8)
        value = crc(content, crc(np.frombuffer(key.encode(), np.uint8), value))
    return value


class RunningChecksums:
    """The checksums of a store being written, advanced by each flush's new rows."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.values = dict.fromkeys(columns, 0)

    @classmethod
    def create(cls, file: h5py.File, columns: list[str]) -> "RunningChecksums":
        flushes = file.create_dataset(
            "checks/flushes", shape=(0, 3 + len(columns)), maxshape=(None, 3 + len(columns)), dtype="i8",
            chunks=(64, 3 + len(columns)),
        )  # fmt: skip
        flushes.attrs["columns"] = json.dumps(columns)
        return cls(columns)

    @classmethod
    def of(cls, file: h5py.File) -> "RunningChecksums":
        """The checksums of an existing store's content (for a store continued after a resume)."""
        checksums = cls(json.loads(file["checks/flushes"].attrs["columns"]))
        for name in checksums.columns:
            checksums.values[name] = crc(file[name][()])
        return checksums

    def add(self, name: str, rows: np.ndarray) -> None:
        self.values[name] = crc(rows, self.values[name])

    def record(self, file: h5py.File, rows: int, dense_rows: int, totals: dict[str, np.ndarray]) -> None:
        """Append the row of this flush, after its data was written."""
        flushes = file["checks/flushes"]
        row = [rows, dense_rows, totals_crc(totals), *(self.values[name] for name in self.columns)]
        flushes.resize(flushes.shape[0] + 1, axis=0)
        flushes[-1] = row


def check_length(path: Path) -> None:
    """Refuse a file shorter than the end-of-file address its HDF5 superblock (version 2 or 3) records."""
    with path.open("rb") as file:
        head = file.read(48)
    if len(head) < 48 or head[:8] != HDF5_SIGNATURE:
        raise DamagedStore(f"{path} is not an HDF5 LCA store (its first bytes are not an HDF5 superblock)")
    if head[8] not in (2, 3) or head[9] != 8:
        return  # older superblock layouts are not written by the store
    end_of_file = struct.unpack_from("<Q", head, 28)[0]
    size = path.stat().st_size
    if size < end_of_file:
        raise DamagedStore(
            f"{path} is cut short: {size:,} of its {end_of_file:,} bytes are there (a copy or a disk that "
            "ran out?); copy it again from its source, or rerun"
        )


def verify(file: h5py.File, path: Path, dense: bool = False, columns: set[str] | None = None) -> None:
    """Check the per-step datasets (or, with ``dense``, the dense ones; or only those named in
    ``columns``, e.g. ``steps/lca_sum``) and the totals against the last flush's checksums; raise
    :class:`DamagedStore` naming what is damaged and what is intact."""
    if "checks" not in file:
        warnings.warn(f"{path} was written before stores had checksums: it is read unchecked", stacklevel=3)
        return
    flushes = file["checks/flushes"][()]
    if not len(flushes):
        return
    boundary = DENSE_ROWS if dense else ROWS
    chosen = [
        (3 + i, name)
        for i, name in enumerate(json.loads(file["checks/flushes"].attrs["columns"]))
        if name.startswith("dense/") == dense and (columns is None or name in columns)
    ]
    damaged, intact_flushes = [], len(flushes)
    for position, name in chosen:
        data, value, start = file[name], 0, 0
        for flush, row in enumerate(flushes):
            end = int(row[boundary])
            try:
                value = crc(data[start:end], value)
            except (OSError, ValueError) as error:  # rows beyond the file's end
                raise DamagedStore(f"{path} is damaged: {name} cannot be read ({error})") from error
            if value != int(row[position]):
                damaged.append(name)
                intact_flushes = min(intact_flushes, flush)
                break
            start = end
    if damaged:
        intact = int(flushes[intact_flushes - 1][ROWS]) if intact_flushes else 0
        verb = "fails its checksum" if len(damaged) == 1 else "fail their checksums"
        raise DamagedStore(
            f"{path} is damaged: {', '.join(damaged)} {verb}; the step records are intact "
            f"for the first {intact} steps ({intact_flushes} of {len(flushes)} flushes); rerun, or resume "
            "from a checkpoint at or before that step"
        )
    if not dense and totals_crc({name: file[f"totals/{name}"][()] for name in TOTALS}) != int(
        flushes[-1][TOTALS_CRC]
    ):
        raise DamagedStore(
            f"{path} is damaged: the running totals (totals/*) fail their checksum; the step records of all "
            f"{int(flushes[-1][ROWS])} steps are intact"
        )
