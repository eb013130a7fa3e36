"""SpaceNet 3 roads: road graphs from label line strings and from predicted masks, and the APLS metric."""

from datamodules.spacenet.roads.apls import Apls, AplsSettings, apls
from datamodules.spacenet.roads.extraction import RoadExtraction
from datamodules.spacenet.roads.frame import MetricFrame
from datamodules.spacenet.roads.graph import road_graph

__all__ = ["Apls", "AplsSettings", "MetricFrame", "RoadExtraction", "apls", "road_graph"]
