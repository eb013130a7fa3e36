"""Road graphs from line strings in a metric CRS, as CosmiQ's ``apls`` builds them from SpaceNet 3's
GeoJSON and from submission line strings:

- a node wherever a line ends, and wherever lines share a vertex (SpaceNet labels are noded at
  intersections; lines that cross without a shared vertex, bridges, are not joined);
- an edge between consecutive nodes along a line, keeping the line's geometry, with its ``length`` in
  metres; an edge repeating another's geometry is dropped;
- connected components with at most ``MAX_NODES_CHECKED`` nodes whose longest shortest path is under
  ``min_component_length`` are removed (``apls._clean_sub_graphs``).

Graphs are ``networkx.MultiGraph``: nodes carry ``x`` and ``y``; edges ``geometry`` (a LineString that
starts at the edge's ``start`` node) and ``length``.
"""

from collections import Counter

import networkx as nx
import numpy as np
import shapely

MAX_NODES_CHECKED = 100  # larger components are kept without measuring them, as apls does
VERTEX_DECIMALS = 3  # vertices closer than a millimetre are one point


def _key(x: float, y: float) -> tuple[float, float]:
    return round(float(x), VERTEX_DECIMALS), round(float(y), VERTEX_DECIMALS)


def _line_coordinates(lines: list) -> list[np.ndarray]:
    parts = [part for line in lines for part in shapely.get_parts(line)]
    return [
        np.asarray(part.coords)[:, :2]
        for part in parts
        if part.geom_type == "LineString" and not part.is_empty and part.length > 0
    ]


def add_edge(graph: nx.MultiGraph, start, end, geometry: shapely.LineString) -> None:
    graph.add_edge(start, end, geometry=geometry, length=geometry.length, start=start)


def road_graph(lines: list, min_component_length: float = 0.0) -> nx.MultiGraph:
    """The road graph of ``lines`` (LineStrings or MultiLineStrings in metres); see the module docstring."""
    coordinates = _line_coordinates(lines)
    uses = Counter(_key(x, y) for points in coordinates for x, y in points)
    ends = {_key(*points[index]) for points in coordinates for index in (0, -1)}
    graph, names, seen = nx.MultiGraph(), {}, set()

    def node(point: np.ndarray):
        key = _key(*point)
        if key not in names:
            names[key] = len(names)
            graph.add_node(names[key], x=float(point[0]), y=float(point[1]))
        return names[key]

    for points in coordinates:
        cut = 0
        for index in range(1, len(points)):
            key = _key(*points[index])
            if key in ends or uses[key] > 1:
                piece = shapely.LineString(points[cut : index + 1])
                start, end = node(points[cut]), node(points[index])
                signature = frozenset({piece.wkb, shapely.reverse(piece).wkb})
                if piece.length > 0 and signature not in seen:
                    seen.add(signature)
                    add_edge(graph, start, end, piece)
                cut = index
    return drop_short_components(graph, min_component_length)


def drop_short_components(graph: nx.MultiGraph, min_length: float) -> nx.MultiGraph:
    """``graph`` without its components of at most ``MAX_NODES_CHECKED`` nodes whose longest shortest path
    is shorter than ``min_length`` (isolated nodes included)."""
    short = []
    for component in nx.connected_components(graph):
        if len(component) > MAX_NODES_CHECKED:
            continue
        lengths = nx.all_pairs_dijkstra_path_length(graph.subgraph(component), weight="length")
        longest = max(max(targets.values()) for _, targets in lengths)
        if longest < min_length:
            short.extend(component)
    graph.remove_nodes_from(short)
    return graph


def total_length(graph: nx.MultiGraph) -> float:
    """The summed length of the edges, in metres."""
    return float(sum(length for _, _, length in graph.edges(data="length")))
