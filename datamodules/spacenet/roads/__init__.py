"""SpaceNet 3 roads: road graphs from label lines and from predicted masks, and the APLS metric."""

from datamodules.spacenet.roads.apls import Apls, AplsSettings, apls
from datamodules.spacenet.roads.extraction import RoadExtraction
from datamodules.spacenet.roads.frame import MetricFrame
from datamodules.spacenet.roads.tile_graphs import geojson_file_graph, pixel_graph

__all__ = [
    "Apls",
    "AplsSettings",
    "MetricFrame",
    "RoadExtraction",
    "apls",
    "geojson_file_graph",
    "pixel_graph",
]
