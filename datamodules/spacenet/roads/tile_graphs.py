"""The truth and proposal road graphs of one tile, in its metric frame, filtered as CosmiQ's ``apls``
filters them before scoring: truth components shorter than 5 m and proposal components shorter than
3 m (apls's 10 px at SpaceNet 3's 0.3 m) are removed."""

from pathlib import Path

import networkx as nx

from datamodules.spacenet.labels import LINEAR, read_labels
from datamodules.spacenet.roads.frame import MetricFrame
from datamodules.spacenet.roads.graph import road_graph

TRUTH_MIN_LENGTH = 5.0  # metres
PROPOSAL_MIN_LENGTH = 3.0  # metres


def geojson_lines(path: Path, frame: MetricFrame) -> list:
    """The road lines of a GeoJSON file, in the frame's metric CRS."""
    return frame.to_metres(read_labels(path, frame.source, LINEAR).geometries)


def truth_graph(lines: list) -> nx.MultiGraph:
    """The truth graph of a tile's label lines, in metres."""
    return road_graph(lines, TRUTH_MIN_LENGTH)


def proposal_graph(pixel_lines: list, frame: MetricFrame) -> nx.MultiGraph:
    """The proposal graph of road lines in pixel coordinates (a submission's ``WKT_Pix``, or extracted
    from a probability map)."""
    return road_graph(frame.pixels_to_metres(pixel_lines), PROPOSAL_MIN_LENGTH)


def geojson_proposal_graph(path: Path, frame: MetricFrame) -> nx.MultiGraph:
    """The proposal graph of a GeoJSON file of road lines (in any CRS)."""
    return road_graph(geojson_lines(path, frame), PROPOSAL_MIN_LENGTH)
