"""Road graphs, road extraction from probability maps, and APLS with the rules of CosmiQ's apls, each
rule on a hand-built graph whose score is derived in the test."""

import numpy as np
import pytest
import shapely
from rasterio.crs import CRS

from datamodules.spacenet.roads import MetricFrame, RoadExtraction, apls, road_graph
from datamodules.spacenet.roads.graph import total_length
from tests.spacenet_fixtures import tile_transform

L = shapely.LineString


def plus(shift: float = 0.0):
    """Two 200 m roads crossing at a shared vertex: four 100 m arms."""
    c = 100 + shift
    return road_graph([L([(shift, c), (c, c), (200 + shift, c)]), L([(c, shift), (c, c), (c, 200 + shift)])])


def test_graph_nodes_at_ends_and_shared_vertices_only():
    graph = plus()
    assert graph.number_of_nodes() == 5 and graph.number_of_edges() == 4
    assert sorted(d for _, d in graph.degree) == [1, 1, 1, 1, 4]
    assert total_length(graph) == pytest.approx(400)
    # lines that cross without a shared vertex (a bridge) are not joined
    bridge = road_graph([L([(0, 100), (200, 100)]), L([(100, 0), (100, 200)])])
    assert bridge.number_of_nodes() == 4 and bridge.number_of_edges() == 2
    # inner vertices of one line are not nodes; a repeated line is one edge
    bent = road_graph([L([(0, 0), (50, 0), (50, 50)])])
    assert bent.number_of_nodes() == 2 and bent.number_of_edges() == 1
    assert total_length(bent) == pytest.approx(100)
    repeated = road_graph([L([(0, 0), (50, 0)]), L([(50, 0), (0, 0)])])
    assert repeated.number_of_edges() == 1


def test_short_components_are_removed():
    graph = road_graph([L([(0, 0), (100, 0)]), L([(0, 50), (4, 50)])], min_component_length=5)
    assert total_length(graph) == pytest.approx(100) and graph.number_of_nodes() == 2


def test_identical_graphs_score_one():
    score = apls(plus(), plus())
    assert (score.truth_onto_proposal, score.proposal_onto_truth, score.total) == (1.0, 1.0, 1.0)


def test_missing_edge():
    """Truth: 4 arms of 100 m, each with its 50 m point: 9 control points. The proposal lacks the arm
    to (100, 0): its end and midpoint are 50 and 100 m away, not snapped. Ordered pairs: the 2 unsnapped
    starts give 2 x 8 terms of 1; the 7 snapped starts give 7 x 8 pairs, of which 7 x 2 end at an
    unsnapped point (1 each) and the rest have equal lengths (0). 1 - 30 / 72 = 7 / 12. Every proposal
    point lies on the truth: 1. Total: the harmonic mean."""
    proposal = road_graph([L([(0, 100), (100, 100), (200, 100)]), L([(100, 100), (100, 200)])])
    score = apls(plus(), proposal)
    assert score.truth_onto_proposal == pytest.approx(7 / 12)
    assert score.proposal_onto_truth == pytest.approx(1.0)
    assert score.total == pytest.approx(2 * 7 / 12 / (1 + 7 / 12))


def test_detour():
    """Truth: a 200 m road, control points at 0, 50, 100, 150, 200 m. The proposal leaves it at 100 m
    for a 30 m detour (60 m longer). Ordered pairs crossing the detour and their terms min(1, 60 / L):
    (0, 150) 0.4, (0, 200) 0.3, (50, 150) 0.6, (50, 200) 0.4, (100, 150) 1, (100, 200) 0.6; twice (both
    orders) = 6.6 over 20 pairs: 1 - 6.6 / 20 = 0.67."""
    truth = road_graph([L([(0, 0), (200, 0)])])
    proposal = road_graph([L([(0, 0), (100, 0), (100, 30), (130, 30), (130, 0), (200, 0)])])
    assert apls(truth, proposal).truth_onto_proposal == pytest.approx(0.67)


@pytest.mark.parametrize(("offset", "expected"), [(3.0, 1.0), (3.99, 1.0), (4.01, 0.0), (5.0, 0.0)])
def test_snap_distance(offset, expected):
    """A parallel copy within max_snap_dist (4 m) snaps everywhere with equal lengths; beyond it nothing
    snaps, every term is 1."""
    truth = road_graph([L([(0, 0), (200, 0)])])
    score = apls(truth, road_graph([L([(0, offset), (200, offset)])]))
    assert score.total == pytest.approx(expected)


def test_empty_proposal_scores_zero_and_empty_truth_is_not_scored():
    assert apls(plus(), road_graph([])).total == 0.0
    assert apls(road_graph([]), plus()) is None


def test_short_paths_are_skipped():
    """Two truth nodes 8 m apart: their paths are shorter than min_path_length (10 m), so no pair is
    compared and the direction scores 0; with min_path_length 5 m the pair is compared and matches."""
    truth = road_graph([L([(0, 0), (8, 0)])])
    assert apls(truth, road_graph([L([(0, 1), (8, 1)])])).truth_onto_proposal == 0.0
    assert apls(truth, road_graph([L([(0, 1), (8, 1)])]), min_path_length=5).total == 1.0


def test_many_nodes_use_a_seeded_sample():
    """With max_nodes truth nodes or more, a seeded sample of control points is compared, no points are
    inserted: identical graphs still score 1, and the same seed gives the same score."""
    lines = [L([(x, 0), (x + 20, 0)]) for x in range(0, 400, 20)]
    truth = road_graph(lines)
    assert truth.number_of_nodes() == 21
    assert apls(truth, road_graph(lines), max_nodes=10).total == 1.0
    shifted = road_graph([L([(0, 0), (200, 0)]), L([(200, 0), (200, 100), (400, 100), (400, 0)])])
    first, second = (apls(truth, shifted, max_nodes=10, seed=3).total for _ in range(2))
    assert first == second and 0 < first < 1


def test_extraction_of_a_cross():
    """A 9 px wide cross on 200 x 200 px: four ends, one crossing, arms shortened by the skeleton."""
    probability = np.zeros((200, 200), dtype=np.float32)
    probability[96:105, 20:180] = 0.9
    probability[20:180, 96:105] = 0.9
    probability[5:8, 5:8] = 0.9  # a 9 px speck: removed
    lines = RoadExtraction(threshold=0.5).lines(probability)
    graph = road_graph(lines)
    degrees = sorted(d for _, d in graph.degree)
    assert degrees == [1, 1, 1, 1, 4]
    centre = [n for n, d in graph.degree if d == 4][0]
    assert abs(graph.nodes[centre]["x"] - 100.5) <= 1.5 and abs(graph.nodes[centre]["y"] - 100.5) <= 1.5
    assert total_length(graph) == pytest.approx(4 * 80, rel=0.1)


def test_metric_frame_of_a_longitude_latitude_tile():
    """A SpaceNet 3 tile is in EPSG:4326; lengths are measured in the UTM zone of its centre."""
    frame = MetricFrame.around(CRS.from_epsg(4326), (-115.2, 36.2))  # Las Vegas: UTM 11 N
    assert frame.metric == CRS.from_epsg(32611)
    # 0.001 degrees of latitude is about 111 m
    (line,) = frame.to_metres([L([(-115.2, 36.2), (-115.2, 36.201)])])
    assert line.length == pytest.approx(110.9, abs=0.3)
    utm = MetricFrame.around(CRS.from_epsg(32631), (600_000, 5_755_000), tile_transform())
    assert utm.metric == utm.source
    (pixels,) = utm.pixels_to_metres([L([(0, 0), (10, 0)])])
    assert pixels.length == pytest.approx(5.0)  # 0.5 m pixels
