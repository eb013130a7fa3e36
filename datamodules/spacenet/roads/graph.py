"""The steps by which CosmiQ's ``apls`` (Van Etten et al., see docs/references.md) turns road lines into
the graphs APLS compares. Each step reproduces what apls.py's code does, quirks included, because APLS
depends on them (which nodes exist, where control points fall, which roads count):

1. :func:`vertex_graph`: a directed multigraph with a node at every distinct vertex and an edge per
   segment, both ways (osmnx's ``add_paths``; ``graphTools`` passes its network type where osmnx expects
   ``bidirectional``, so one-way tags never apply).
2. :func:`simplified`: osmnx's topological simplification (strict): a node that only joins two roads end
   to end (two neighbours, in and out edges) is merged into one edge through it; a loop hanging off one
   junction becomes a self-loop, once for each direction it can be travelled.
3. ``.to_undirected()`` (networkx): the two directions of a road become one edge.
4. :func:`without_repeated_edges`: apls.py's ``create_edge_linestrings``: an edge whose geometry repeats
   an earlier edge's (either direction) between the same nodes is removed, and it is matched against
   both orientations of the earlier one, so it is removed twice: a repeated road disappears altogether
   (its first copy too), unless the earlier copy is the very first edge. This is how apls.py drops every
   loop hanging off one junction (a cul-de-sac loop). ``keep_loops`` (corrected rules) removes a repeat
   once and keeps its first copy.
5. :func:`without_short_components`: components of at most ``max_nodes`` nodes whose longest shortest path
   is under a length are removed (``_clean_sub_graphs``).

Graphs are networkx multigraphs with integer nodes carrying ``x``, ``y`` (metres) and edges carrying
``length`` (metres; how it is measured is the caller's: great-circle for GeoJSON lines, as osmnx
measures them, planar for pixel lines), ``geometry`` (a LineString in metres) and ``speed`` (m/s, or
None). Node and edge order follow apls.py's, since they decide which control point wins a tie.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
import shapely


@dataclass(frozen=True)
class RoadLine:
    """One road line: its vertices (N, 2) in metres, the length of each of its N - 1 segments and its
    speed in m/s (None when unknown)."""

    vertices: np.ndarray
    segment_lengths: Sequence[float]
    speed: float | None = None


def vertex_graph(lines: Iterable[RoadLine], first_id: int = 0) -> nx.MultiDiGraph:
    """Step 1: a node per distinct vertex (in order of first appearance), each line's segments as edges
    in its order, then in reverse. Nodes are numbered as ``graphTools`` numbers them from ``first_id``:
    one number skipped before and after each line (apls.py compares control points by these numbers)."""
    graph, nodes, number = nx.MultiDiGraph(), {}, first_id
    for line in lines:
        path = []
        number += 1
        for x, y in np.asarray(line.vertices, dtype=np.float64)[:, :2]:
            if (x, y) not in nodes:
                nodes[x, y] = number
                graph.add_node(number, x=float(x), y=float(y))
                number += 1
            path.append(nodes[x, y])
        number += 1
        pairs = zip(path[:-1], path[1:], line.segment_lengths, strict=True)
        segments = [(a, b, {"length": float(length), "speed": line.speed}) for a, b, length in pairs]
        graph.add_edges_from(segments)
        graph.add_edges_from((b, a, dict(data)) for a, b, data in segments)
    return graph


def _is_endpoint(graph: nx.MultiDiGraph, node) -> bool:
    """osmnx's strict rule: a self-loop, a node without in or out edges, or one that does not have exactly
    two neighbours with two or four edges."""
    neighbours = set(graph.predecessors(node)) | set(graph.successors(node))
    if node in neighbours or graph.out_degree(node) == 0 or graph.in_degree(node) == 0:
        return True
    return not (len(neighbours) == 2 and graph.degree(node) in (2, 4))


def _chain(graph: nx.MultiDiGraph, start, first, endpoints: set) -> list:
    """The nodes from endpoint ``start`` through ``first`` to the next endpoint (back to ``start`` for a
    loop), following the first successor not yet on the chain."""
    path = [start, first]
    while path[-1] not in endpoints:
        onward = [node for node in graph.successors(path[-1]) if node not in path]
        if not onward:
            if path[0] in graph.successors(path[-1]):
                path.append(path[0])
            break
        path.append(onward[0])
    return path


def _merged_speed(speeds: list):
    """The speed of edges merged by simplification: osmnx keeps the distinct values and apls.py averages
    them (not weighted by length); unknown if any is."""
    if any(speed is None for speed in speeds):
        return None
    return float(np.mean(sorted(set(speeds))))


def simplified(graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """Step 2: every chain of nodes between endpoints merged into one edge (geometry through the nodes,
    lengths summed, speed as :func:`_merged_speed`)."""
    out = graph.copy()
    endpoints = {node for node in out if _is_endpoint(out, node)}
    chains = [_chain(out, node, successor, endpoints) for node in out if node in endpoints
              for successor in out.successors(node) if successor not in endpoints]  # fmt: skip
    merged, interior = [], set()
    for chain in chains:
        segments = [out.edges[u, v, 0] for u, v in zip(chain[:-1], chain[1:], strict=True)]
        geometry = shapely.LineString([(out.nodes[n]["x"], out.nodes[n]["y"]) for n in chain])
        length = sum(segment["length"] for segment in segments)
        speed = _merged_speed([segment["speed"] for segment in segments])
        merged.append((chain[0], chain[-1], {"length": length, "geometry": geometry, "speed": speed}))
        interior.update(chain[1:-1])
    out.add_edges_from(merged)
    out.remove_nodes_from(interior)
    return out


def node_line(graph: nx.Graph, u, v) -> shapely.LineString:
    """The straight line from node ``u`` to node ``v``."""
    return shapely.LineString([(graph.nodes[n]["x"], graph.nodes[n]["y"]) for n in (u, v)])


def starts_nearer(graph: nx.Graph, line: shapely.LineString, u, v) -> bool:
    """Whether ``line`` starts nearer node ``u`` than node ``v`` (apls.py's test of an edge's direction)."""
    x, y = line.coords[0][:2]
    to_u = np.hypot(graph.nodes[u]["x"] - x, graph.nodes[u]["y"] - y)
    to_v = np.hypot(graph.nodes[v]["x"] - x, graph.nodes[v]["y"] - y)
    return to_u < to_v


def without_repeated_edges(graph: nx.MultiGraph, keep_loops: bool = False) -> nx.MultiGraph:
    """Step 4 on a copy of ``graph``: every edge gets a geometry (a straight line if it had none) that
    starts at the first of its nodes as the edges are listed, and repeated edges are removed (module
    docstring). ``keep_loops``: each repeat is removed once."""
    out = graph.copy()
    seen_pairs: set = set()
    seen_lines: list[tuple] = []
    repeats = []
    for index, (u, v, data) in enumerate(out.edges(data=True)):
        line = data.get("geometry") or node_line(out, u, v)
        coordinates = tuple(line.coords)
        if starts_nearer(out, line, v, u):
            line = shapely.reverse(line)
        data["geometry"] = line
        if index == 0:  # apls.py keeps only this edge's own orientation
            seen_pairs, seen_lines = {(u, v), (v, u)}, [coordinates]
        elif (u, v) in seen_pairs or (v, u) in seen_pairs:
            both = (coordinates, coordinates[::-1])
            matches = sum(seen in both for seen in seen_lines)
            repeats += [(u, v)] * (min(matches, 1) if keep_loops else matches)
        else:
            seen_pairs.add((u, v))
            seen_lines += [coordinates, coordinates[::-1]]
    for u, v in repeats:
        if out.has_edge(u, v):
            out.remove_edge(u, v)
    return out


def without_short_components(graph: nx.MultiGraph, min_length: float, max_nodes: int,
                             weight: str = "length") -> nx.MultiGraph:  # fmt: skip
    """Step 5, in place: the components of at most ``max_nodes`` nodes whose longest shortest path
    (``weight``) is shorter than ``min_length`` are removed (isolated nodes included)."""
    short = []
    for component in nx.connected_components(graph):
        if len(component) > max_nodes:
            continue
        lengths = nx.all_pairs_dijkstra_path_length(graph.subgraph(component), weight=weight)
        if max(max(targets.values()) for _, targets in lengths) < min_length:
            short.extend(component)
    graph.remove_nodes_from(short)
    return graph


def total_length(graph: nx.MultiGraph) -> float:
    """The summed length of the edges, in metres."""
    return float(sum(length for _, _, length in graph.edges(data="length")))
