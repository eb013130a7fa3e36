"""SpaceNet's CSVs of pixel-coordinate WKT geometries (building truth and proposals, road submissions):
rows grouped by ``ImageId``, every row that cannot be used named by its row number."""

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import shapely
from shapely import wkt

from lightning_app.errors import UserInputError, describe


@dataclass
class CsvRows:
    """Items of a SpaceNet CSV by image id, the first row number of each image id, and the rows that
    could not be used."""

    items: dict[str, list]
    first_row: dict[str, int]
    skipped: list[str]


def _unusable(path: Path, number: int, problem: str, strict: bool, rows: CsvRows) -> None:
    line = f"{path} row {number}: {problem}"
    if strict:
        raise UserInputError(line)
    rows.skipped.append(line)


def read_wkt_csv(
    path: str | Path,
    columns: tuple[str, ...],
    geometry: str,
    strict: bool,
    item: Callable[[shapely.Geometry, dict], object] = lambda shape, line: shape,
    kinds: tuple[str, ...] | None = None,
) -> CsvRows:
    """Rows of ``path`` grouped by ``ImageId``: ``item(shape, row)`` of the WKT in column ``geometry``.
    A row whose WKT (or other value ``item`` reads) cannot be read, or whose geometry is not one of
    ``kinds`` (empty geometries always pass), is an error with ``strict``, otherwise skipped and listed."""
    path = Path(path)
    try:
        with path.open(newline="") as file:
            reader = csv.DictReader(file)
            missing = [column for column in columns if column not in (reader.fieldnames or [])]
            if missing:
                raise UserInputError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(columns)}"
                )
            lines = list(reader)
    except OSError as error:
        raise UserInputError(f"cannot read {path}: {error}") from error
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserInputError(f"{path} is not a CSV text file ({describe(error)})") from error
    rows = CsvRows({}, {}, [])
    for number, line in enumerate(lines, start=2):
        if not (line.get(geometry) or "").strip():
            _unusable(path, number, f"no {geometry} value", strict, rows)
            continue
        try:
            shape = wkt.loads(line[geometry])
            value = item(shape, line)
        except (shapely.errors.GEOSException, ValueError, TypeError) as error:
            _unusable(path, number, f"cannot read {line.get(geometry)!r} ({error})", strict, rows)
            continue
        if kinds is not None and not shape.is_empty and shape.geom_type not in kinds:
            _unusable(path, number, f"a {shape.geom_type}, expected {' or '.join(kinds)}", strict, rows)
            continue
        rows.items.setdefault(line["ImageId"], []).append(value)
        rows.first_row.setdefault(line["ImageId"], number)
    return rows


def drop_unknown_images(rows: CsvRows, known: set[str], path: str | Path, strict: bool) -> list[str]:
    """Remove from ``rows`` the image ids not in ``known``: an error with ``strict``, otherwise the
    problems (file and row) are returned."""
    problems = []
    for image_id in sorted(rows.items.keys() - known):
        problem = f"{path} row {rows.first_row[image_id]}: image id {image_id!r} is not in the truth"
        if strict:
            raise UserInputError(problem)
        problems.append(problem)
        del rows.items[image_id]
    return problems
