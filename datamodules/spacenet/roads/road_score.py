"""Scoring SpaceNet 3 road proposals with APLS, file by file: truth GeoJSON per tile against proposal
GeoJSON per tile (any CRS) or a submission CSV (``ImageId,WKT_Pix``, pixel coordinates, ``LINESTRING
EMPTY`` for a tile without roads, whose pixels the tiles' GeoTIFFs place)."""

from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import shapely

from datamodules.spacenet.labels import LINEAR, geojson_crs, read_geojson, read_labels
from datamodules.spacenet.layouts import LAYOUTS
from datamodules.spacenet.rasters import read_info
from datamodules.spacenet.roads.apls import Apls, AplsSettings, apls
from datamodules.spacenet.roads.frame import MetricFrame
from datamodules.spacenet.roads.tile_graphs import geojson_proposal_graph, proposal_graph, truth_graph
from datamodules.spacenet.wkt_csv import drop_unknown_images, read_wkt_csv
from lightning_app.errors import UserInputError

ROAD_COLUMNS = ("ImageId", "WKT_Pix")
ROADS_LAYOUT = next(layout for layout in LAYOUTS if layout.target == "roads")


@dataclass
class RoadScores:
    """APLS per scored image; the images with no truth road (not scored); the unusable rows."""

    images: dict[str, Apls]
    without_truth: list[str]
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


def _truth(path: Path, image: Path | None) -> tuple[MetricFrame, nx.MultiGraph]:
    """The tile's metric frame (from its GeoTIFF, or else from the truth file's CRS and the centre of its
    roads) and its truth graph, the file read once for its lines."""
    if image is not None:
        info = read_info(image)
        frame, lines = MetricFrame.of_tile(info), read_labels(path, info.crs, LINEAR).geometries
    else:
        crs = geojson_crs(read_geojson(path), path)
        lines = read_labels(path, crs, LINEAR).geometries
        if lines:
            left, bottom, right, top = shapely.total_bounds(np.asarray(lines, dtype=object))
            frame = MetricFrame.around(crs, ((left + right) / 2, (bottom + top) / 2))
        else:  # no road: the tile is not scored
            frame = MetricFrame(crs, crs)
    return frame, truth_graph(frame.to_metres(lines))


def score_roads(
    truth_dir: Path, proposal: Path, images_dir: Path | None, strict: bool, settings: AplsSettings
) -> RoadScores:
    """APLS of every truth tile against its proposal (none: an empty proposal, APLS 0)."""
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
        rows = read_wkt_csv(
            proposal, ROAD_COLUMNS, "WKT_Pix", strict, kinds=("LineString", "MultiLineString")
        )
        skipped += rows.skipped + drop_unknown_images(rows, set(truths), proposal, strict)
    scores, without_truth = {}, []
    for name, path in truths.items():
        if images_dir is not None and name not in images:
            raise UserInputError(f"--images {images_dir}: no GeoTIFF of {name} (the truth {path.name})")
        frame, truth = _truth(path, images.get(name))
        if rows is not None:
            proposed = proposal_graph(rows.items.get(name, []), frame)
        elif name in proposal_files:
            proposed = geojson_proposal_graph(proposal_files[name], frame)
        else:
            proposed = nx.MultiGraph()
        score = apls(truth, proposed, **vars(settings))
        if score is None:
            without_truth.append(name)
        else:
            scores[name] = score
    return RoadScores(scores, without_truth, skipped)
