"""APLS, the Average Path Length Similarity of SpaceNet 3, with the rules of CosmiQ's ``apls/apls.py``
(Van Etten et al., see docs/references.md), on graphs built by
:mod:`datamodules.spacenet.roads.tile_graphs`:

1. Repeated edges are removed from both graphs
   (:func:`~datamodules.spacenet.roads.graph.without_repeated_edges`, apls.py's ``make_graphs``).
2. Control points: every node of each graph, then points inserted along its edges in the order the edges
   are listed: none on an edge whose ``length`` is under 0.75 ``linestring_delta``, the middle of its
   geometry when ``length`` is at most ``linestring_delta``, else ``len(arange(0, length, delta)) - 1``
   points at ``linspace(0, length, ...)`` along the geometry (``create_graph_midpoints``; ``length`` is
   the great-circle length for GeoJSON graphs, the geometry is planar). A truth graph of 500 nodes or more
   gets no inserted points and at most ``max_nodes`` (1,000) of each graph's nodes are compared, a seeded
   sample beyond that (``make_graphs_yuge``, whose sample is not seeded).
3. Snapping: each control point of one graph in turn is inserted into the other graph (without its
   inserted points) on the nearest edge, the first listed of equals, if it is at most ``max_snap_dist``
   away; in a graph of more than 1,000 nodes only edges at one of the 20 nodes nearest the point are
   searched (apls.py's k-d tree). The edge is split at the point's projection (pieces measured planar).
   A projection onto an end of the edge (within 5 cm) is that node: it takes the control point's name and
   position (``allow_renaming``), so a control point snapped there earlier is no longer in the graph and
   counts as not snapped. Corrected rules: the control point becomes a node of its own, joined to that
   node by an edge as long as their distance (apls.py with ``allow_renaming`` off). Control points keep
   their node numbers in the other graph, where a number already taken means not inserted (see
   :func:`_direction`); corrected rules keep the two graphs' names apart.
4. Path terms, for each ordered pair (a, b) of control points of the source graph connected there: if a
   was not inserted into the other graph, 1 for every b != a; otherwise pairs with L(a, b) <
   ``min_path_length`` are skipped, a pair not connected in the other graph scores 1, and the rest
   min(1, |L(a, b) - L(a', b')| / L(a, b)) (``path_sim_metric``, ``single_path_metric``).
5. A direction's score is 1 - the mean term (0 when there is no pair); truth onto proposal uses the
   truth's control points, proposal onto truth the proposal's. APLS is their harmonic mean, 0 when
   either is 0 (``compute_apls_metric``). An empty proposal scores 0; a tile without truth roads is not
   scored.

Path lengths are in metres, or with ``weight: travel_time`` in seconds (``length / speed`` of each edge;
the pieces of a split edge take the speed of the first edge listed at its first node, as apls.py copies
that edge's properties; corrected rules: the split edge's own).
"""

from dataclasses import dataclass

import networkx as nx
import numpy as np
import scipy.sparse
import shapely
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from datamodules.spacenet.roads.graph import starts_nearer, without_repeated_edges
from lightning_app.errors import UserInputError

MIDPOINTS_MAX_TRUTH_NODES = 500  # larger truth graphs get no inserted control points
KD_TREE_MIN_NODES = 1000  # larger graphs: the nearest edge is searched among the nearest nodes' edges
KD_TREE_NEIGHBOURS = 20
COINCIDENT = 0.05  # metres: a projection this close (in x and in y) to an edge's end is that node
MIDPOINT_MAX_DISTANCE = 5.0  # metres: apls.py's default snapping distance when inserting midpoints
WEIGHTS = ("length", "travel_time")
RULES = ("cosmiq", "corrected")


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
    """The APLS parameters a user sets (module docstring), CosmiQ's command-line defaults.

    Args:
        linestring_delta: control point spacing along edges, metres.
        max_snap_dist: how far a control point may be from the other graph to be inserted, metres.
        min_path_length: shorter paths are not compared (metres, or seconds for travel times).
        weight: ``length`` (APLS_length) or ``travel_time`` (APLS_time, SpaceNet 5: edges need speeds).
        rules: ``cosmiq`` (apls.py's, quirks included) or ``corrected``: a control point landing on a
            node keeps its own node, loops hanging off one junction are kept, split edges keep their
            speed (README, "Roads on SpaceNet 3").
    """

    linestring_delta: float = 50.0
    max_snap_dist: float = 4.0
    min_path_length: float = 0.001
    weight: str = "length"
    rules: str = "cosmiq"

    def __post_init__(self) -> None:
        if not self.linestring_delta > 0:
            raise UserInputError(f"linestring_delta={self.linestring_delta}: must be > 0 (metres)")
        for name in ("max_snap_dist", "min_path_length"):
            if not getattr(self, name) >= 0:
                raise UserInputError(f"{name}={getattr(self, name)}: must be >= 0")
        if self.weight not in WEIGHTS:
            raise UserInputError(f"weight={self.weight!r}: expected one of {', '.join(WEIGHTS)}")
        if self.rules not in RULES:
            raise UserInputError(f"rules={self.rules!r}: expected one of {', '.join(RULES)}")

    @property
    def corrected(self) -> bool:
        return self.rules == "corrected"


def cut_line(line: shapely.LineString, distance: float) -> list[shapely.LineString]:
    """``line`` cut ``distance`` along it (apls.py's ``cut_linestring``): at the first vertex whose
    projection reaches the distance, with the cut point added unless it is that vertex; the whole line
    when the distance is at or beyond an end."""
    if distance <= 0.0 or distance >= line.length:
        return [line]
    vertices = shapely.get_coordinates(line)
    along = shapely.line_locate_point(line, shapely.points(vertices))
    reached = np.flatnonzero(along >= distance)
    index = int(reached[0]) if len(reached) else len(vertices) - 1
    if along[index] == distance:
        return [shapely.LineString(vertices[: index + 1]), shapely.LineString(vertices[index:])]
    point = shapely.get_coordinates(line.interpolate(distance))
    return [shapely.LineString(np.vstack([vertices[:index], point])),
            shapely.LineString(np.vstack([point, vertices[index:]]))]  # fmt: skip


def _coincident_end(graph: nx.MultiGraph, point: shapely.Point, u, v):
    for node in (u, v):
        if (
            abs(point.x - graph.nodes[node]["x"]) <= COINCIDENT
            and abs(point.y - graph.nodes[node]["y"]) <= COINCIDENT
        ):
            return node
    return None  # apls.py reports an error and leaves the point out


class SnapTarget:
    """A graph that points are inserted into one by one (rule 3 of the module docstring), as apls.py's
    ``insert_point_into_G`` changes it, with its edges' lines kept at hand for the nearest-edge search.

    Args:
        graph: the graph, changed in place (``graph`` is replaced by a renamed copy when a point takes a
            node's name, as networkx's ``relabel_nodes`` gives it).
        corrected: corrected rules (a point on a node gets its own node; split edges keep their speed).
    """

    def __init__(self, graph: nx.MultiGraph, corrected: bool) -> None:
        self.graph = graph
        self.corrected = corrected
        self.edges = list(graph.edges(keys=True))
        self.lines = [graph.edges[edge]["geometry"] for edge in self.edges]

    def _outcome(self, index: int, point: shapely.Point):
        """What inserting ``point`` on edge ``index`` does: take a node, or split the edge."""
        (u, v, _), line = self.edges[index], self.lines[index]
        along = line.project(point)
        if along <= 0.0 or along >= line.length:
            return "node", _coincident_end(self.graph, line.interpolate(along), u, v)
        return "split", index

    def _nearest(self, point: shapely.Point, nearby: set | None) -> tuple[int, float] | None:
        """The index of the nearest edge (at a node of ``nearby`` when given) and its distance; of equals,
        the first as networkx lists the edges, where the choice matters."""
        candidates = np.arange(len(self.edges))
        if nearby is not None:
            candidates = np.array([i for i, (u, v, _) in enumerate(self.edges) if u in nearby or v in nearby],
                                  dtype=int)  # fmt: skip
        if len(candidates) == 0:
            return None
        distances = shapely.distance(point, np.asarray(self.lines, dtype=object)[candidates])
        tied = candidates[distances == distances.min()]
        if len(tied) > 1 and len({self._outcome(i, point) for i in tied}) > 1:
            listed = enumerate(self.graph.edges(keys=True))
            order = {edge: position for position, (u, v, k) in listed for edge in ((u, v, k), (v, u, k))}
            tied = sorted(tied, key=lambda i: order[self.edges[i]])
        return int(tied[0]), float(distances.min())

    def _rename(self, node, name, at: shapely.Point) -> None:
        self.graph = nx.relabel_nodes(self.graph, {node: name})
        self.graph.nodes[name].update(x=at.x, y=at.y)
        self.edges = [(name if u == node else u, name if v == node else v, k) for u, v, k in self.edges]

    def _add_edge(self, node, new, properties: dict, line: shapely.LineString) -> None:
        """An edge from ``node`` to the ``new`` node (last in node order, so networkx lists it second,
        which decides which end of a short edge a point is said to land on)."""
        key = self.graph.add_edge(node, new, **{**properties, "length": line.length, "geometry": line})
        self.edges.append((node, new, key))
        self.lines.append(line)

    def insert(self, name, point: shapely.Point, max_distance: float, nearby: set | None = None) -> None:
        """Insert ``point`` as node ``name`` on the nearest edge if it is at most ``max_distance`` away and
        ``name`` is not a node yet; otherwise leave the graph as it is."""
        nearest = self._nearest(point, nearby)
        if nearest is None or nearest[1] > max_distance or name in self.graph:
            return
        index = nearest[0]
        (u, v, key), line = self.edges[index], self.lines[index]
        graph = self.graph
        along = line.project(point)
        at = line.interpolate(along)
        source = graph.edges[u, v, key] if self.corrected else next(iter(graph.edges([u, v], data=True)))[2]
        pieces = cut_line(line, along)
        if len(pieces) == 1:
            end = _coincident_end(graph, at, u, v)
            if end is None:
                return
            if not self.corrected:
                self._rename(end, name, at)
                return
            graph.add_node(name, x=at.x, y=at.y)
            self._add_edge(
                end, name, source, shapely.LineString([(graph.nodes[end]["x"], graph.nodes[end]["y"]), at])
            )
            return
        at_u, at_v = pieces[::-1] if starts_nearer(graph, line, v, u) else pieces
        graph.add_node(name, x=at.x, y=at.y)
        self._add_edge(u, name, source, at_u)
        self._add_edge(v, name, source, at_v)
        graph.remove_edge(u, v, key)
        del self.edges[index], self.lines[index]


def with_midpoints(graph: nx.MultiGraph, delta: float, corrected: bool) -> nx.MultiGraph:
    """``graph`` with control points inserted along its edges (rule 2), numbered on from its largest node."""
    target = SnapTarget(graph.copy(), corrected)
    name = max(graph.nodes, default=-1) + 1
    for _, _, data in graph.edges(data=True):
        length, line = data["length"], data["geometry"]
        if not length >= 0.75 * delta:
            continue
        if length <= delta:
            distances = [0.5 * line.length]
        else:
            distances = np.linspace(0, length, len(np.arange(0, length, delta)) + 1)[1:-1]
        for distance in distances:
            target.insert(name, line.interpolate(distance), MIDPOINT_MAX_DISTANCE)
            name += 1
    return target.graph


def with_points(graph: nx.MultiGraph, points: list[tuple], max_distance: float, corrected: bool
                ) -> nx.MultiGraph:  # fmt: skip
    """A copy of ``graph`` with each (name, x, y) of ``points`` inserted in turn (rule 3)."""
    target = SnapTarget(graph.copy(), corrected)
    names = list(graph.nodes)
    tree = None
    if len(names) > KD_TREE_MIN_NODES:
        tree = cKDTree([(graph.nodes[n]["x"], graph.nodes[n]["y"]) for n in names])
    for name, x, y in points:
        nearby = None if tree is None else {names[i] for i in tree.query((x, y), k=KD_TREE_NEIGHBOURS)[1]}
        target.insert(name, shapely.Point(x, y), max_distance, nearby)
    return target.graph


def _edge_weight(data: dict, weight: str) -> float:
    if weight == "length":
        return data["length"]
    if data.get("speed") is None:
        raise UserInputError("weight=travel_time: an edge has no speed (give the lines a speed, --speed-key)")
    return data["length"] / data["speed"]


def path_lengths(graph: nx.MultiGraph, nodes: list, weight: str = "length") -> np.ndarray:
    """Shortest path lengths between ``nodes`` (inf where not connected or a node is absent)."""
    index = {node: position for position, node in enumerate(graph.nodes)}
    result = np.full((len(nodes), len(nodes)), np.inf)
    present = [position for position, node in enumerate(nodes) if node in index]
    if not present:
        return result
    weights: dict[tuple[int, int], float] = {}
    for u, v, data in graph.edges(data=True):
        pair = (min(index[u], index[v]), max(index[u], index[v]))
        weights[pair] = min(weights.get(pair, np.inf), _edge_weight(data, weight))
    rows, cols = zip(*weights, strict=True) if weights else ((), ())
    matrix = scipy.sparse.csr_matrix((list(weights.values()), (rows, cols)), shape=(len(index),) * 2)
    sources = [index[nodes[position]] for position in present]
    lengths = dijkstra(matrix, directed=False, indices=sources)
    result[np.ix_(present, present)] = lengths[:, sources]
    return result


def path_score(native: np.ndarray, other: np.ndarray, snapped: np.ndarray, min_path_length: float) -> float:
    """One direction of APLS (rules 4 and 5) from the path lengths between the control points in their
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


def _direction(source: nx.MultiGraph, control: list, target: nx.MultiGraph, side: str,
               settings: AplsSettings) -> float:  # fmt: skip
    """The score of ``source``'s control points (nodes of ``source``) snapped onto ``target``. apls.py
    inserts them under their own node numbers: one that is already a node of ``target`` is not inserted,
    and that node stands in for it (graphs numbered as :mod:`~datamodules.spacenet.roads.tile_graphs`
    numbers them reproduce this); corrected rules name them apart."""
    points = [((side, n) if settings.corrected else n, source.nodes[n]["x"], source.nodes[n]["y"])
              for n in control]  # fmt: skip
    snapped_graph = with_points(target, points, settings.max_snap_dist, settings.corrected)
    names = [name for name, _, _ in points]
    native = path_lengths(source, control, settings.weight)
    other = path_lengths(snapped_graph, names, settings.weight)
    snapped = np.array([name in snapped_graph for name in names])
    return path_score(native, other, snapped, settings.min_path_length)


def _sample(graph: nx.MultiGraph, size: int, seed: int) -> list:
    nodes = list(graph.nodes)
    if len(nodes) <= size:
        return nodes
    chosen = np.random.default_rng(seed).choice(len(nodes), size, replace=False)
    return [nodes[i] for i in sorted(chosen)]


def apls(truth: nx.MultiGraph, proposal: nx.MultiGraph, settings: AplsSettings | None = None,
         max_nodes: int = 1000, seed: int = 0) -> Apls | None:  # fmt: skip
    """APLS of ``proposal`` against ``truth`` (graphs of :mod:`datamodules.spacenet.roads.tile_graphs`
    in the same metric CRS; module docstring), or None when the truth has no road."""
    settings = settings or AplsSettings()
    if truth.number_of_nodes() == 0:
        return None
    if proposal.number_of_nodes() == 0:
        return Apls(0.0, 0.0)
    if truth.number_of_nodes() < MIDPOINTS_MAX_TRUTH_NODES:
        truth = without_repeated_edges(truth, settings.corrected)
        proposal = without_repeated_edges(proposal, settings.corrected)
        truth_dense = with_midpoints(truth, settings.linestring_delta, settings.corrected)
        proposal_dense = with_midpoints(proposal, settings.linestring_delta, settings.corrected)
        truth_control, proposal_control = list(truth_dense.nodes), list(proposal_dense.nodes)
    else:
        truth_dense, proposal_dense = truth, proposal
        truth_control, proposal_control = _sample(truth, max_nodes, seed), _sample(proposal, max_nodes, seed)
    return Apls(
        _direction(truth_dense, truth_control, proposal, "truth", settings),
        _direction(proposal_dense, proposal_control, truth, "proposal", settings),
    )
