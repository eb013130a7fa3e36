"""Road graphs, road extraction and APLS with the rules of CosmiQ's apls.py, each rule on a hand-built
graph whose score is derived in the test (lines in metres with planar lengths unless said otherwise; the
values were also checked against apls.py's own functions)."""

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from datamodules.spacenet.roads import AplsSettings, MetricFrame, RoadExtraction, apls, pixel_graph
from datamodules.spacenet.roads.apls import cut_line, with_midpoints
from datamodules.spacenet.roads.graph import RoadLine, total_length
from datamodules.spacenet.roads.tile_graphs import GEOJSON_PROPOSAL_FIRST_ID, TRUTH_FIRST_ID, geojson_graph
from lightning_app.errors import UserInputError
from tests.spacenet_fixtures import tile_transform

L = shapely.LineString
CORRECTED = AplsSettings(rules="corrected")
METRES = MetricFrame(CRS.from_epsg(32611), CRS.from_epsg(32611))  # pixels are metres


def graph(*lines, speed=None, keep_loops=False, first_id=TRUTH_FIRST_ID):
    """The graph of ``lines`` (vertex lists in metres) by the GeoJSON rules, with planar lengths, numbered
    as apls.py numbers a truth."""
    vertices = [np.asarray(line, dtype=float) for line in lines]
    road_lines = [RoadLine(v, np.hypot(*np.diff(v, axis=0).T), speed) for v in vertices]
    return geojson_graph(road_lines, keep_loops, first_id)


def proposal(*lines, **options):
    """:func:`graph`, numbered as apls.py numbers a GeoJSON proposal."""
    return graph(*lines, first_id=GEOJSON_PROPOSAL_FIRST_ID, **options)


def positions(g) -> list[tuple]:
    return [(round(g.nodes[n]["x"], 6), round(g.nodes[n]["y"], 6)) for n in g.nodes]


def plus(build=graph):
    """Two 200 m roads crossing at a shared vertex: four 100 m arms."""
    return build([(0, 100), (100, 100), (200, 100)], [(100, 0), (100, 100), (100, 200)])


def test_graph_nodes_at_ends_and_junctions_only():
    g = plus()
    assert g.number_of_nodes() == 5 and g.number_of_edges() == 4
    assert sorted(d for _, d in g.degree) == [1, 1, 1, 1, 4]
    assert total_length(g) == pytest.approx(400)
    # lines that cross without a shared vertex (a bridge) are not joined
    bridge = graph([(0, 100), (200, 100)], [(100, 0), (100, 200)])
    assert bridge.number_of_nodes() == 4 and bridge.number_of_edges() == 2
    # a repeated line (in either direction) is removed with its first copy: apls.py matches the repeat
    # against both orientations of the first, so removes an edge twice
    tee = [(0, 0), (50, 0)], [(50, 0), (50, 30)]
    assert total_length(graph(*tee, [(50, 0), (50, 30)])) == pytest.approx(50)
    assert total_length(graph(*tee, [(50, 30), (50, 0)], keep_loops=True)) == pytest.approx(80)


def test_short_components_are_removed():
    g = graph([(0, 0), (100, 0)], [(0, 50), (4.9, 50)], [(0, 80), (5.1, 80)])
    assert total_length(g) == pytest.approx(105.1) and g.number_of_nodes() == 4


def test_lines_meeting_end_to_end_are_one_edge():
    """A 120 m road given as two 60 m lines: simplification merges their joint, so the control points are
    the ends and linspace(0, 120, 4)[1:-1] = 40 and 80 m (with the joint kept they would be 0, 30, 60, 90,
    120). Proposal: 0..100 m. Truth onto proposal: 120 is 20 m away, not snapped: its 3 pairs score 1;
    the 3 snapped starts each have a pair to it (1) and 2 pairs of equal lengths (0): 1 - 6/12 = 0.5 (the
    kept joint would give 1 - 8/20 = 0.6). Proposal onto truth: 1. APLS: the harmonic mean, 2/3."""
    truth = graph([(0, 0), (60, 0)], [(60, 0), (120, 0)])
    assert truth.number_of_nodes() == 2 and truth.number_of_edges() == 1
    assert positions(with_midpoints(truth, 50.0, corrected=False)) == [(0, 0), (120, 0), (40, 0), (80, 0)]
    score = apls(truth, proposal([(0, 0), (100, 0)]))
    assert (score.truth_onto_proposal, score.proposal_onto_truth) == pytest.approx((0.5, 1.0))
    assert score.total == pytest.approx(2 / 3)


def test_control_points_landing_on_one_node():
    """Truth: a road to (100, 0) with a junction at 97.5 m and a 20 m side road; control points in order
    0, 97.5, 100, the side road's end, and the midpoint 48.75. The proposal road ends at (96, 0): both
    97.5 (1.5 m away) and 100 (4 m: snapped, the limit is inclusive) project onto its end node.

    apls.py's rules: the end node takes the name of each in turn, so 97.5 is no longer there and counts as
    not snapped, like the side road's end: 2 x 4 pairs of 1; the snapped 0, 100, 48.75 have 2 pairs each to
    those (1) and 6 among themselves: (0, 100) |100 - 96| / 100 = 0.04 twice, (100, 48.75) |51.25 - 47.25|
    / 51.25 twice, (0, 48.75) 0: 1 - (14 + 0.08 + 8 / 51.25) / 20 = 0.288195.

    Corrected rules: 97.5 and 100 get nodes of their own at (96, 0), joined to the end by zero-length
    edges: only the side road's end is not snapped (4 + 4 terms of 1); the 12 pairs among the others:
    twice |97.5 - 96| / 97.5, 0.04, |2.5 - 0| / 2.5 = 1, 0, 1.5 / 48.75 and 4 / 51.25: 0.483580."""
    truth = graph([(0, 0), (97.5, 0), (100, 0)], [(97.5, 0), (97.5, -20)])
    road = proposal([(0, 0), (96, 0)])
    assert apls(truth, road).truth_onto_proposal == pytest.approx(1 - (14 + 0.08 + 8 / 51.25) / 20)
    pairs = 1.5 / 97.5 + 0.04 + 1 + 0 + 1.5 / 48.75 + 4 / 51.25
    assert apls(truth, road, CORRECTED).truth_onto_proposal == pytest.approx(1 - (8 + 2 * pairs) / 20)
    assert apls(truth, road).proposal_onto_truth == pytest.approx(1.0)


def test_loop_hanging_off_a_junction():
    """A road (0, 0)-(100, 0) with a loop of eight 22.36 m segments back to (100, 0). Simplification makes
    the loop a self-loop at (100, 0) for each direction it can be driven; apls.py removes the second as
    a repeat of the first, twice, so the loop is gone and the truth scores 1 against the road alone.
    Corrected rules keep one copy: 100 + 8 x 22.36 m."""
    loop = [(100, 0), (120, 10), (130, 30), (120, 50), (100, 60), (80, 50), (70, 30), (80, 10), (100, 0)]
    truth, road = graph([(0, 0), (100, 0)], loop), proposal([(0, 0), (100, 0)])
    assert total_length(truth) == pytest.approx(100) and truth.number_of_nodes() == 2
    assert apls(truth, road).total == pytest.approx(1.0)
    kept = graph([(0, 0), (100, 0)], loop, keep_loops=True)
    assert total_length(kept) == pytest.approx(100 + 8 * np.hypot(20, 10))
    assert apls(kept, road, CORRECTED).truth_onto_proposal < 0.9


def test_control_points_keep_their_node_numbers_in_the_other_graph():
    """apls.py inserts control points under their own node numbers; a number the other graph already has
    is not inserted, and that graph's node of the number stands in for it. Truth and proposal both
    numbered from 0 (as a truth of more than 500 numbers meets a GeoJSON proposal): a 30 m proposal road
    1 km away from a 30 m truth road scores 1, since their ends (nodes 1 and 2, no inserted points under
    37.5 m) match by number. Corrected rules keep the names apart: nothing is within 4 m, APLS 0."""
    truth, far = graph([(0, 0), (30, 0)]), graph([(1000, 0), (1030, 0)])
    assert list(truth.nodes) == list(far.nodes) == [1, 2]
    assert apls(truth, far).total == pytest.approx(1.0)
    assert apls(truth, far, CORRECTED).total == 0.0


def test_identical_graphs_score_one():
    score = apls(plus(), plus(proposal))
    assert (score.truth_onto_proposal, score.proposal_onto_truth, score.total) == (1.0, 1.0, 1.0)


def test_missing_edge():
    """Truth: 4 arms of 100 m, each with its 50 m point: 9 control points. The proposal lacks the arm
    to (100, 0): its end and midpoint are 50 and 100 m away, not snapped. Ordered pairs: the 2 unsnapped
    starts give 2 x 8 terms of 1; the 7 snapped starts give 7 x 8 pairs, of which 7 x 2 end at an
    unsnapped point (1 each) and the rest have equal lengths (0). 1 - 30 / 72 = 7 / 12. Every proposal
    point lies on the truth: 1. Total: the harmonic mean."""
    score = apls(plus(), proposal([(0, 100), (100, 100), (200, 100)], [(100, 100), (100, 200)]))
    assert score.truth_onto_proposal == pytest.approx(7 / 12)
    assert score.proposal_onto_truth == pytest.approx(1.0)
    assert score.total == pytest.approx(2 * 7 / 12 / (1 + 7 / 12))


def test_detour():
    """Truth: a 200 m road, control points at 0, 50, 100, 150, 200 m. The proposal leaves it at 100 m
    for a 30 m detour (60 m longer). Ordered pairs crossing the detour and their terms min(1, 60 / L):
    (0, 150) 0.4, (0, 200) 0.3, (50, 150) 0.6, (50, 200) 0.4, (100, 150) 1, (100, 200) 0.6; twice (both
    orders) = 6.6 over 20 pairs: 1 - 6.6 / 20 = 0.67."""
    truth = graph([(0, 0), (200, 0)])
    detour = proposal([(0, 0), (100, 0), (100, 30), (130, 30), (130, 0), (200, 0)])
    assert apls(truth, detour).truth_onto_proposal == pytest.approx(0.67)


@pytest.mark.parametrize(("offset", "expected"), [(3.0, 1.0), (4.0, 1.0), (4.01, 0.0), (5.0, 0.0)])
def test_snap_distance(offset, expected):
    """A parallel copy within max_snap_dist (4 m, inclusive) snaps everywhere with equal lengths; beyond
    it nothing snaps, every term is 1."""
    truth = graph([(0, 0), (200, 0)])
    score = apls(truth, proposal([(0, offset), (200, offset)]))
    assert score.total == pytest.approx(expected)


def test_empty_proposal_scores_zero_and_empty_truth_is_not_scored():
    assert apls(plus(), proposal()).total == 0.0
    assert apls(graph(), plus(proposal)) is None


def test_short_paths_are_skipped():
    """Two truth nodes 8 m apart: with min_path_length 10 m no pair is compared and the direction scores
    0; with apls.py's default (1 mm) the pair is compared and matches."""
    truth = graph([(0, 0), (8, 0)])
    assert (
        apls(truth, proposal([(0, 1), (8, 1)]), AplsSettings(min_path_length=10)).truth_onto_proposal == 0.0
    )
    assert apls(truth, proposal([(0, 1), (8, 1)])).total == 1.0


def comb_lines(teeth: int, shift: float = 0.0) -> list:
    """A road with a 10 m spur every 10 m (3 m longer on odd spurs with ``shift``): 2 * teeth + 2 nodes."""
    spurs = [[(10.0 * i, 0), (10.0 * i, 10 + shift * (i % 2))] for i in range(1, teeth + 1)]
    return [[(10.0 * i, 0) for i in range(teeth + 2)], *spurs]


def test_large_truth_graphs_get_no_inserted_points_and_compare_a_sample():
    """From 500 truth nodes on, no control points are inserted and at most max_nodes nodes of each graph
    are compared (a seeded sample). Truth: a comb of 500 nodes and, apart, a 1,000 m road; the proposal
    draws the road 500 m long. Its far end is the road's only unsnapped point: its pair and the pair from
    the near end score 1, all 500 x 499 comb pairs match: 1 - 2 / (500 x 499 + 2). (Points every 50 m
    would have left ten more unsnapped.) With max_nodes 100, the same seed gives the same score."""
    road = [(0, -100), (1000, -100)]
    truth = graph(*comb_lines(249), road)
    assert truth.number_of_nodes() == 502
    score = apls(truth, proposal(*comb_lines(249), [(0, -100), (500, -100)]))
    assert score.truth_onto_proposal == pytest.approx(1 - 2 / (500 * 499 + 2), abs=1e-12)
    shifted = proposal(*comb_lines(249, shift=3.0), road)
    scores = {apls(truth, shifted, max_nodes=100, seed=3).total for _ in range(2)}
    assert len(scores) == 1 and 0 < scores.pop() < 1


def test_cut_line_at_a_vertex_and_between_vertices():
    line = L([(0, 0), (10, 0), (10, 10)])
    assert [list(piece.coords) for piece in cut_line(line, 10.0)] == [[(0, 0), (10, 0)], [(10, 0), (10, 10)]]
    assert [list(piece.coords) for piece in cut_line(line, 15.0)] == [[(0, 0), (10, 0), (10, 5)],
                                                                    [(10, 5), (10, 10)]]  # fmt: skip
    assert cut_line(line, 20.0) == [line] and cut_line(line, 0.0) == [line]


def test_travel_times():
    """The same 120 m road at 10 m/s in the truth and 12.5 m/s in the proposal: every travel time differs by
    |1 - 10 / 12.5| = 0.2 of the truth's, and by |1 - 12.5 / 10| = 0.25 of the proposal's."""
    settings = AplsSettings(weight="travel_time")
    score = apls(graph([(0, 0), (120, 0)], speed=10.0), proposal([(0, 0), (120, 0)], speed=12.5), settings)
    assert (score.truth_onto_proposal, score.proposal_onto_truth) == pytest.approx((0.8, 0.75))
    with pytest.raises(UserInputError, match="weight=travel_time: an edge has no speed"):
        apls(graph([(0, 0), (120, 0)]), proposal([(0, 0), (120, 0)]), settings)


def test_settings_refuse_values_outside_their_domain():
    cases = [({"linestring_delta": 0}, "linestring_delta=0: must be > 0"),
             ({"max_snap_dist": -4}, "max_snap_dist=-4: must be >= 0"),
             ({"weight": "time"}, "weight='time': expected one of length, travel_time"),
             ({"rules": "strict"}, "rules='strict': expected one of cosmiq, corrected")]  # fmt: skip
    for bad, message in cases:
        with pytest.raises(UserInputError, match=message):
            AplsSettings(**bad)


def test_pixel_lines():
    """Rows of a submission in pixels: two rows meeting end to end are one edge; a segment already given
    (either way) is skipped; a piece under 10 px on its own is removed, one of 11 px is kept."""
    g = pixel_graph([L([(0, 0), (40, 0)]), L([(40, 0), (80, 0)]), L([(80, 0), (40, 0)]),
                     L([(0, 50), (9, 50)]), L([(0, 90), (11, 90)])], METRES)  # fmt: skip
    assert g.number_of_edges() == 2 and total_length(g) == pytest.approx(80 + 11)


def test_extraction_of_a_cross():
    """A 9 px wide cross on 200 x 200 px: four ends, one crossing, arms shortened by the skeleton."""
    probability = np.zeros((200, 200), dtype=np.float32)
    probability[96:105, 20:180] = 0.9
    probability[20:180, 96:105] = 0.9
    probability[5:8, 5:8] = 0.9  # a 9 px speck: removed
    g = pixel_graph(RoadExtraction(threshold=0.5).lines(probability), MetricFrame(
        CRS.from_epsg(32611), CRS.from_epsg(32611), Affine.identity()))  # fmt: skip
    assert sorted(d for _, d in g.degree) == [1, 1, 1, 1, 4]
    centre = [n for n, d in g.degree if d == 4][0]
    assert abs(g.nodes[centre]["x"] - 100.5) <= 1.5 and abs(g.nodes[centre]["y"] - 100.5) <= 1.5
    assert total_length(g) == pytest.approx(4 * 80, rel=0.1)


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
