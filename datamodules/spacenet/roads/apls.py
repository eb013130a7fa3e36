"""APLS, the Average Path Length Similarity of SpaceNet 3, with the rules of CosmiQ's ``apls/apls.py``
(Van Etten et al., see docs/references.md):

1. Control points: every node of each graph, plus points inserted along its edges: an edge shorter than
   0.75 ``linestring_delta`` gets none, one up to ``linestring_delta`` gets its midpoint, a longer one
   ``len(arange(0, L, delta)) - 1`` evenly spaced points (``create_graph_midpoints``; current apls
   injects them on straight edges too). Graphs with ``max_nodes`` truth nodes or more get no inserted
   points, and a seeded sample of ``max_nodes`` nodes of each graph is compared (``make_graphs_yuge``).
2. Snapping: each control point of one graph is inserted, in turn, into the other graph (without its
   inserted points) on the nearest edge (first of equals) if that edge is within ``max_snap_dist``
   metres; a point that projects onto an edge's end is that node (``insert_point_into_G`` joins them
   by a zero-length edge). Points farther away are not inserted.
3. Path term, for each ordered pair (a, b) of control points of the source graph connected there: if a
   was not inserted into the other graph, 1 for every b != a; otherwise pairs with L(a, b) <
   ``min_path_length`` are skipped, a pair not connected in the other graph scores 1, and the rest
   min(1, |L(a, b) - L(a', b')| / L(a, b)) (``path_sim_metric``, ``single_path_metric``).
4. A direction's score is 1 - the mean term (0 when there is no pair); truth onto proposal uses the
   truth's control points, proposal onto truth the proposal's. APLS is their harmonic mean, 0 when
   either is 0 (``compute_apls_metric``). An empty proposal scores 0; an image without truth roads is
   not scored (``gather_files`` skips it).

Graphs are those of :func:`datamodules.spacenet.roads.graph.road_graph` (lengths in metres).
"""

from dataclasses import dataclass

import networkx as nx
import numpy as np
import scipy.sparse
import shapely
from scipy.sparse.csgraph import dijkstra
from shapely.ops import substring

from datamodules.spacenet.roads.graph import add_edge


@dataclass(frozen=True)
class Apls:
    """The two directions of APLS and their harmonic mean."""

    truth_onto_proposal: float
    proposal_onto_truth: float

    @property
    def total(self) -> float:
        a, b = self.truth_onto_proposal, self.proposal_onto_truth
        return 0.0 if a <= 0 or b <= 0 else 2 * a * b / (a + b)


@dataclass(frozen=True)
class AplsSettings:
    """The APLS parameters a user sets (module docstring): control point spacing, snapping distance and
    shortest path compared, in metres."""

    linestring_delta: float = 50.0
    max_snap_dist: float = 4.0
    min_path_length: float = 10.0


def _named(graph: nx.MultiGraph, side: str) -> nx.MultiGraph:
    """``graph`` with node ``n`` renamed ``(side, n)``, so the two graphs' names never collide."""
    named = nx.relabel_nodes(graph, {node: (side, node) for node in graph.nodes}, copy=True)
    for _, _, data in named.edges(data=True):
        data["start"] = (side, data["start"])
    return named


def _split(graph: nx.MultiGraph, edge: tuple, distances: list[float], names: list) -> None:
    """Cut ``edge`` (u, v, key) at ``distances`` (increasing, inside the line) into a chain of edges
    through new nodes ``names``."""
    u, v, key = edge
    data = graph.edges[edge]
    line, start = data["geometry"], data["start"]
    end = v if start == u else u
    graph.remove_edge(u, v, key)
    chain = [start, *names, end]
    cuts = [0.0, *distances, line.length]
    for name, distance in zip(names, distances, strict=True):
        point = line.interpolate(distance)
        graph.add_node(name, x=point.x, y=point.y)
    for first, second, a, b in zip(chain, chain[1:], cuts, cuts[1:], strict=False):
        add_edge(graph, first, second, substring(line, a, b))


def with_control_points(graph: nx.MultiGraph, delta: float) -> nx.MultiGraph:
    """``graph`` with points inserted along its edges every ``delta`` metres (rule 1)."""
    out = graph.copy()
    count = 0
    for edge in list(out.edges(keys=True)):
        length = out.edges[edge]["length"]
        if length < 0.75 * delta:
            continue
        if length <= delta:
            distances = [length / 2]
        else:
            distances = list(np.linspace(0, length, len(np.arange(0, length, delta)) + 1)[1:-1])
        side = edge[0][0]
        names = [(side, "inserted", count + i) for i in range(len(distances))]
        count += len(distances)
        _split(out, edge, distances, names)
    return out


def snap_points(graph: nx.MultiGraph, points: list[tuple], max_distance: float) -> tuple[nx.MultiGraph, dict]:
    """``graph`` with each (name, x, y) of ``points`` inserted in turn on its nearest edge within
    ``max_distance`` (rule 2), and where each inserted name now is: its own new node, or the node it
    coincides with (the zero-length edge of apls, without the edge)."""
    out, located = graph.copy(), {}
    edges = list(out.edges(keys=True))
    lines = [out.edges[edge]["geometry"] for edge in edges]
    for name, x, y in points:
        if not edges:
            break
        point = shapely.Point(x, y)
        distances = shapely.distance(point, np.asarray(lines, dtype=object))
        nearest = int(np.argmin(distances))
        if distances[nearest] > max_distance:
            continue
        edge, line = edges[nearest], lines[nearest]
        along = line.project(point)
        u, v, _ = edge
        start = out.edges[edge]["start"]
        if along <= 0 or along >= line.length:
            located[name] = start if along <= 0 else (v if start == u else u)
            continue
        _split(out, edge, [along], [name])
        located[name] = name
        halves = [(a, b, k) for a, b, k in out.edges([name], keys=True)]
        edges[nearest : nearest + 1] = halves
        lines[nearest : nearest + 1] = [out.edges[half]["geometry"] for half in halves]
    return out, located


def _distances(graph: nx.MultiGraph, nodes: list) -> np.ndarray:
    """Shortest path lengths between ``nodes`` (inf where not connected or a node is absent)."""
    index = {node: position for position, node in enumerate(graph.nodes)}
    result = np.full((len(nodes), len(nodes)), np.inf)
    present = [position for position, node in enumerate(nodes) if node in index]
    if not present:
        return result
    weights = {}
    for u, v, length in graph.edges(data="length"):
        pair = (min(index[u], index[v]), max(index[u], index[v]))
        weights[pair] = min(weights.get(pair, np.inf), length)
    rows, cols = zip(*weights, strict=True) if weights else ((), ())
    matrix = scipy.sparse.csr_matrix((list(weights.values()), (rows, cols)), shape=(len(index),) * 2)
    sources = [index[nodes[position]] for position in present]
    lengths = dijkstra(matrix, directed=False, indices=sources)
    targets = np.asarray(sources)
    result[np.ix_(present, present)] = lengths[:, targets]
    return result


def path_score(native: np.ndarray, other: np.ndarray, snapped: np.ndarray, min_path_length: float) -> float:
    """One direction of APLS (rules 3 and 4) from the path lengths between the control points in their
    own graph (``native``) and in the other graph (``other``), and whether each was inserted there."""
    connected = np.isfinite(native)
    others = connected & ~np.eye(len(native), dtype=bool)
    unsnapped_pairs = int(others[~snapped].sum())
    compared = connected & (native >= min_path_length) & snapped[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(np.isfinite(other), np.minimum(1.0, np.abs(native - other) / native), 1.0)
    terms = np.where(native > 0, terms, 0.0)
    count = unsnapped_pairs + int(compared.sum())
    return 0.0 if count == 0 else 1.0 - (unsnapped_pairs + float(terms[compared].sum())) / count


def _control(graph: nx.MultiGraph, delta: float, sample: int | None, seed: int):
    if sample is None:
        dense = with_control_points(graph, delta)
        return dense, list(dense.nodes)
    nodes = list(graph.nodes)
    chosen = np.random.default_rng(seed).choice(len(nodes), min(sample, len(nodes)), replace=False)
    return graph, [nodes[i] for i in sorted(chosen)]


def _direction(source_dense, source_nodes, target, max_snap_dist, min_path_length) -> float:
    points = [(node, source_dense.nodes[node]["x"], source_dense.nodes[node]["y"]) for node in source_nodes]
    snapped_graph, located = snap_points(target, points, max_snap_dist)
    snapped = np.array([node in located for node in source_nodes])
    other = _distances(snapped_graph, [located.get(node) for node in source_nodes])
    return path_score(_distances(source_dense, source_nodes), other, snapped, min_path_length)


def apls(
    truth: nx.MultiGraph,
    proposal: nx.MultiGraph,
    linestring_delta: float = 50.0,
    max_snap_dist: float = 4.0,
    min_path_length: float = 10.0,
    max_nodes: int = 500,
    seed: int = 0,
) -> Apls | None:
    """APLS of ``proposal`` against ``truth`` (road graphs in the same metric CRS; module docstring), or
    None when the truth has no road."""
    if truth.number_of_nodes() == 0:
        return None
    if proposal.number_of_nodes() == 0:
        return Apls(0.0, 0.0)
    truth, proposal = _named(truth, "truth"), _named(proposal, "proposal")
    sample = max_nodes if truth.number_of_nodes() >= max_nodes else None
    truth_dense, truth_nodes = _control(truth, linestring_delta, sample, seed)
    proposal_dense, proposal_nodes = _control(proposal, linestring_delta, sample, seed)
    return Apls(
        _direction(truth_dense, truth_nodes, proposal, max_snap_dist, min_path_length),
        _direction(proposal_dense, proposal_nodes, truth, max_snap_dist, min_path_length),
    )
