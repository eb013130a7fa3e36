"""Records read once per version of their file: a view asks for one image of a record per request (a
grid of 30 images is 30 requests), so the record is decompressed once, not once per image."""

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

KEPT = 32  # records kept
Record = TypeVar("Record")
_records: OrderedDict[tuple, object] = OrderedDict()
_lock = threading.Lock()


def cached(path: Path, load: Callable[[], Record]) -> Record:
    """``load()`` (which reads ``path``), or its result from the last call on the same version of the
    file (its modification time and size). A missing file is left to ``load`` to report."""
    if not path.is_file():
        return load()
    status = path.stat()
    key = (str(path), status.st_mtime_ns, status.st_size)
    with _lock:
        if key in _records:
            _records.move_to_end(key)
            return _records[key]
    record = load()
    with _lock:
        _records[key] = record
        while len(_records) > KEPT:
            _records.popitem(last=False)
    return record
