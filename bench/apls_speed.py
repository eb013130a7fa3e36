"""APLS on a SpaceNet 3-sized tile: seconds for the road graph extraction and for APLS.

A synthetic 1,300 x 1,300 px tile at 0.3 m (390 m square) holds a jittered grid of roads every
``--spacing`` metres with curved side roads: a truth graph of a few hundred nodes. The "prediction" is
the roads buffered by 2 m, blurred, with noise and with ``--gaps`` roads broken, as a probability map.
Timed per tile (best of ``--repeats``):

- extraction: probability map -> threshold, small objects, skeleton (scikit-image) -> sknw graph ->
  simplified lines -> graph by apls.py's rules for pixel lines (``RoadExtraction`` + ``pixel_graph``);
- APLS: control points, snapping both ways and path lengths (``datamodules.spacenet.roads.apls``);
- baseline: networkx's all-pairs Dijkstra over the same four graphs, the path-length step CosmiQ's
  apls.py runs (it is only that step, so the ratio understates the gap to the whole of apls.py).

    python bench/apls_speed.py [--spacing 25] [--gaps 6] [--repeats 3]
"""

import argparse
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np
import rasterio.features
import scipy.ndimage
import shapely
from rasterio.crs import CRS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datamodules.spacenet.roads import MetricFrame, RoadExtraction, apls, pixel_graph  # noqa: E402
from datamodules.spacenet.roads.apls import with_midpoints, with_points  # noqa: E402
from datamodules.spacenet.roads.graph import RoadLine, without_repeated_edges  # noqa: E402
from datamodules.spacenet.roads.tile_graphs import geojson_graph  # noqa: E402

SIZE, PIXEL = 1300, 0.3  # SpaceNet 3 tiles: 1,300 px at 0.3 m
METRIC = CRS.from_epsg(32611)  # any metric CRS: the lines are in metres from the tile origin


def road_lines(spacing: float, rng: np.random.Generator) -> list[shapely.LineString]:
    """A jittered grid of straight roads every ``spacing`` metres (noded at every crossing) plus a curved
    road, in metres (x right, y down, tile origin at 0)."""
    extent = SIZE * PIXEL
    positions = np.arange(spacing / 2, extent, spacing)
    xs = positions + rng.uniform(-2, 2, len(positions))
    ys = positions + rng.uniform(-2, 2, len(positions))
    lines = [shapely.LineString([(0, y), *[(x, y) for x in xs], (extent, y)]) for y in ys]
    lines += [shapely.LineString([(x, 0), *[(x, y) for y in ys], (x, extent)]) for x in xs]
    angles = np.linspace(0, np.pi, 60)
    lines.append(
        shapely.LineString(np.column_stack([extent / 2 + 150 * np.cos(angles), 20 + 100 * np.sin(angles)]))
    )
    return lines


def probability_map(lines: list, gaps: int, rng: np.random.Generator) -> np.ndarray:
    shapes = [(line.buffer(2.0), 1) for line in lines]
    for index in rng.choice(len(lines) - 1, gaps, replace=False):  # break some roads for 6 m
        centre = lines[index].interpolate(rng.uniform(0.2, 0.8), normalized=True)
        shapes.append((centre.buffer(3.0), 0))
    transform = rasterio.transform.Affine(PIXEL, 0, 0, 0, PIXEL, 0)
    mask = rasterio.features.rasterize(shapes, out_shape=(SIZE, SIZE), transform=transform).astype(np.float32)
    noisy = mask + rng.normal(0, 0.5, mask.shape)
    return np.clip(scipy.ndimage.gaussian_filter(noisy, 3.0), 0, 1).astype(np.float32)


def best_of(repeats: int, run) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def truth_graph(lines: list[shapely.LineString]):
    """The truth graph of lines in metres, by apls.py's rules for GeoJSON lines (planar lengths here)."""
    vertices = [np.asarray(line.coords) for line in lines]
    return geojson_graph([RoadLine(v, np.hypot(*np.diff(v, axis=0).T)) for v in vertices])


def networkx_all_pairs(truth, proposal) -> None:
    """The path lengths apls.py computes with networkx: both graphs with control points, and each with
    the other's control points snapped in."""
    truth, proposal = without_repeated_edges(truth), without_repeated_edges(proposal)
    for side, source, target in (("truth", truth, proposal), ("proposal", proposal, truth)):
        dense = with_midpoints(source, 50.0, corrected=False)
        points = [((side, n), dense.nodes[n]["x"], dense.nodes[n]["y"]) for n in dense.nodes]
        snapped = with_points(target, points, 4.0, corrected=False)
        for graph in (dense, snapped):
            dict(nx.all_pairs_dijkstra_path_length(graph, weight="length"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spacing", type=float, default=25.0)
    parser.add_argument("--gaps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    lines = road_lines(args.spacing, rng)
    probability = probability_map(lines, args.gaps, rng)
    truth = truth_graph(lines)
    extraction = RoadExtraction()
    extraction.lines(probability[:64, :64])  # compile sknw's numba functions outside the timing
    frame = MetricFrame(METRIC, METRIC, rasterio.transform.Affine.scale(PIXEL))

    def extract():
        return pixel_graph(extraction.lines(probability), frame)

    extract_s, proposal = best_of(args.repeats, extract)
    apls_s, score = best_of(args.repeats, lambda: apls(truth, proposal))
    baseline_s, _ = best_of(1, lambda: networkx_all_pairs(truth, proposal))
    print(f"tile {SIZE} x {SIZE} px at {PIXEL} m; truth {truth.number_of_nodes()} nodes / "
          f"{truth.number_of_edges()} edges; proposal {proposal.number_of_nodes()} nodes / "
          f"{proposal.number_of_edges()} edges")  # fmt: skip
    print(f"APLS {score.total:.3f} (truth onto proposal {score.truth_onto_proposal:.3f}, proposal onto "
          f"truth {score.proposal_onto_truth:.3f})")  # fmt: skip
    print(f"graph extraction : {extract_s:6.2f} s")
    print(f"APLS             : {apls_s:6.2f} s")
    print(f"total per tile   : {extract_s + apls_s:6.2f} s (target < 2 s)")
    print(
        f"networkx all-pairs path lengths alone: {baseline_s:6.2f} s = {baseline_s / apls_s:.1f}x our "
        "whole APLS"
    )


if __name__ == "__main__":
    main()
