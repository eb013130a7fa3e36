"""Scoring SpaceNet 3 road proposals with APLS, file by file: truth GeoJSON per tile against proposal
GeoJSON per tile (any CRS) or a submission CSV (``ImageId,WKT_Pix`` in pixel coordinates, ``LINESTRING
EMPTY`` for a tile without roads, placed by the tiles' GeoTIFFs; with ``weight: travel_time`` also
``travel_time_s`` per line, as SpaceNet 5's)."""

from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import shapely

from datamodules.spacenet.layouts import LAYOUTS
from datamodules.spacenet.rasters import read_info
from datamodules.spacenet.roads.apls import Apls, AplsSettings, apls
from datamodules.spacenet.roads.frame import MetricFrame
from datamodules.spacenet.roads.tile_graphs import (
    GEOJSON_PROPOSAL_FIRST_ID,
    geojson_file_graph,
    geojson_graph,
    geojson_road_lines,
    pixel_graph,
    read_road_labels,
)
from datamodules.spacenet.wkt_csv import CsvRows, drop_unknown_images, read_wkt_csv
from lightning_app.errors import UserInputError

ROAD_COLUMNS = ("ImageId", "WKT_Pix")
TRAVEL_TIME_COLUMN = "travel_time_s"
ROADS_LAYOUT = next(layout for layout in LAYOUTS if layout.target == "roads")


@dataclass
class RoadScores:
    """APLS per scored image; the images with no truth road (not scored), those whose proposal is empty
    (scored 0), and the unusable rows."""

    images: dict[str, Apls]
    without_truth: list[str]
    empty_proposals: list[str]
    skipped: list[str]


def image_id(path: Path) -> str:
    """A tile's id from a SpaceNet 3 file name (``AOI_2_Vegas_img12``), or the file's stem."""
    return ROADS_LAYOUT.tile_id(path) or path.stem


def files_by_image(folder: Path, suffix: str, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise UserInputError(f"{role} {folder} is not a folder")
    files = {image_id(path): path for path in sorted(folder.glob(f"*{suffix}"))}
    if not files:
        raise UserInputError(f"{role} {folder}: no {suffix} files there")
    return files


def truth_tile(path: Path, image: Path | None, settings: AplsSettings, speed_key: str | None
               ) -> tuple[MetricFrame, nx.MultiGraph]:  # fmt: skip
    """The tile's metric frame (from its GeoTIFF, or else from the truth file's CRS and the centre of its
    roads) and its truth graph, the file read once."""
    labels, source = read_road_labels(path)
    if image is not None:
        frame = MetricFrame.of_tile(read_info(image))
    elif labels.geometries:
        left, bottom, right, top = shapely.total_bounds(np.asarray(labels.geometries, dtype=object))
        frame = MetricFrame.around(source, ((left + right) / 2, (bottom + top) / 2))
    else:  # no road: the tile is not scored
        frame = MetricFrame(source, source)
    lines = geojson_road_lines(labels, source, frame, path, speed_key)
    return frame, geojson_graph(lines, keep_loops=settings.corrected)


def _line_item(settings: AplsSettings):
    """What a CSV row gives: its geometry, and with travel times the row's ``travel_time_s``."""
    if settings.weight == "length":
        return lambda shape, row: (shape, None)

    def with_time(shape, row):
        seconds = float(row[TRAVEL_TIME_COLUMN])
        if not seconds > 0:
            raise ValueError(f"{TRAVEL_TIME_COLUMN}={row[TRAVEL_TIME_COLUMN]!r} is not a positive time")
        return shape, seconds

    return with_time


def read_submission(path: Path, settings: AplsSettings, strict: bool) -> CsvRows:
    columns = ROAD_COLUMNS + ((TRAVEL_TIME_COLUMN,) if settings.weight == "travel_time" else ())
    return read_wkt_csv(path, columns, "WKT_Pix", strict, item=_line_item(settings),
                        kinds=("LineString", "MultiLineString"))  # fmt: skip


def submission_graph(items: list[tuple], frame: MetricFrame) -> nx.MultiGraph:
    """The proposal graph of one image's CSV rows (geometry, travel time or None): each line's speed is
    its length in metres over its travel time."""
    lines = [shape for shape, _ in items if not shape.is_empty]
    seconds = [time for shape, time in items if not shape.is_empty]
    if any(time is not None for time in seconds):
        metres = frame.pixels_to_metres(lines)
        return pixel_graph(lines, frame, [m.length / t for m, t in zip(metres, seconds, strict=True)])
    return pixel_graph(lines, frame)


def score_roads(truth_dir: Path, proposal: Path, images_dir: Path | None, strict: bool,
                settings: AplsSettings, speed_key: str | None = None) -> RoadScores:  # fmt: skip
    """APLS of every truth tile against its proposal (none, or an empty one: APLS 0). ``speed_key``: the
    GeoJSON property holding each line's speed in m/s, for ``weight: travel_time``."""
    truths = files_by_image(truth_dir, ".geojson", "--truth")
    images = files_by_image(images_dir, ".tif", "--images") if images_dir is not None else {}
    skipped: list[str] = []
    if proposal.is_dir():
        proposal_files = files_by_image(proposal, ".geojson", "--proposal")
        rows = None
    else:
        if images_dir is None:
            raise UserInputError(
                f"--proposal {proposal} holds pixel coordinates: give --images, the folder of the tiles' "
                "GeoTIFFs, to place them"
            )
        rows = read_submission(proposal, settings, strict)
        skipped += rows.skipped + drop_unknown_images(rows, set(truths), proposal, strict)
    scores = RoadScores({}, [], [], skipped)
    for name, path in truths.items():
        if images_dir is not None and name not in images:
            raise UserInputError(f"--images {images_dir}: no GeoTIFF of {name} (the truth {path.name})")
        frame, truth = truth_tile(path, images.get(name), settings, speed_key)
        if rows is not None:
            proposed = submission_graph(rows.items.get(name, []), frame)
        elif name in proposal_files:
            proposed = geojson_file_graph(proposal_files[name], frame, settings.corrected, speed_key,
                                          GEOJSON_PROPOSAL_FIRST_ID)  # fmt: skip
        else:
            proposed = nx.MultiGraph()
        score = apls(truth, proposed, settings)
        if score is None:
            scores.without_truth.append(name)
            continue
        scores.images[name] = score
        if proposed.number_of_nodes() == 0:
            scores.empty_proposals.append(name)
    return scores
