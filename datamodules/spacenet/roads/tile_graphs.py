"""The road graphs of one tile, built from its two kinds of input exactly as CosmiQ's ``apls`` builds them
(the steps are in :mod:`datamodules.spacenet.roads.graph`):

- **GeoJSON lines** (SpaceNet 3's labels, proposal GeoJSON; apls.py's ``_create_gt_graph``): a node per
  distinct vertex, an edge per segment (one-way tags do not apply); edge lengths are great-circle lengths
  of the longitude/latitude vertices (osmnx's haversine, Earth radius 6,371,009 m, each segment rounded
  to the millimetre), geometry in the tile's metric CRS; simplified; repeated edges removed; components
  shorter than 5 m (of at most 100 nodes) removed.
- **Pixel lines** (a submission CSV's ``WKT_Pix``, or lines extracted from a probability map; apls.py's
  ``wkt_to_G``): a node per distinct pixel vertex, one edge per segment in the line's direction, a
  segment already seen (either way) skipped; components shorter than 10 px (of at most 30 nodes, before
  simplification) removed; then placed in metres by the tile's transform, lengths planar; simplified.
  Repeated edges are removed when APLS compares the graph, as apls.py does.
"""

from pathlib import Path

import networkx as nx
import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.warp import transform

from datamodules.spacenet.labels import LINEAR, Labels, geojson_crs, read_geojson, read_labels
from datamodules.spacenet.roads.frame import LON_LAT, MetricFrame
from datamodules.spacenet.roads.graph import (
    RoadLine,
    node_line,
    simplified,
    vertex_graph,
    without_repeated_edges,
    without_short_components,
)
from lightning_app.errors import UserInputError

GEOJSON_MIN_LENGTH = 5.0  # metres (apls.py's gt_min_subgraph_length)
GEOJSON_MAX_NODES_CHECKED = 100  # larger components are kept without measuring them
PIXEL_MIN_LENGTH = 10.0  # pixels (apls.py's prop_min_subgraph_length on length_pix)
PIXEL_MAX_NODES_CHECKED = 30
EARTH_RADIUS = 6_371_009.0  # metres, osmnx's great-circle distance
# where apls.py starts numbering nodes: control points keep their numbers in the other graph, so these
# decide which points collide with the other graph's nodes
TRUTH_FIRST_ID = 0
GEOJSON_PROPOSAL_FIRST_ID = 500
PIXEL_FIRST_ID = 1000


def great_circle_lengths(longitude_latitude: np.ndarray) -> np.ndarray:
    """The haversine length of each segment of a line of (longitude, latitude) vertices, in metres,
    rounded to the millimetre."""
    lon, lat = np.deg2rad(longitude_latitude[:, 0]), np.deg2rad(longitude_latitude[:, 1])
    h = np.sin(np.diff(lat) / 2) ** 2 + np.cos(lat[:-1]) * np.cos(lat[1:]) * np.sin(np.diff(lon) / 2) ** 2
    return np.round(2 * np.arcsin(np.sqrt(np.minimum(1.0, h))) * EARTH_RADIUS, 3)


def _speed(properties: dict, speed_key: str | None, path: Path) -> float | None:
    if speed_key is None:
        return None
    value = properties.get(speed_key)
    try:
        speed = float(value)
    except (TypeError, ValueError):
        raise UserInputError(
            f"{path}: a line has no usable {speed_key!r} property ({value!r}); travel times need a speed "
            "in m/s on every line: name the property with --speed-key"
        ) from None
    if not speed > 0:
        raise UserInputError(f"{path}: a line has {speed_key}={value!r}; speeds must be positive (m/s)")
    return speed


def _to_lon_lat(geometry, source: CRS):
    if source == LON_LAT:
        return geometry
    return shapely.transform(
        geometry, lambda xy: np.column_stack(transform(source, LON_LAT, xy[:, 0], xy[:, 1]))
    )


def read_road_labels(path: Path) -> tuple[Labels, CRS]:
    """The road lines of a GeoJSON file, with their properties, in the file's own CRS, and that CRS."""
    source = geojson_crs(read_geojson(path), path)
    return read_labels(path, source, LINEAR), source


def geojson_road_lines(labels: Labels, source: CRS, frame: MetricFrame, path: Path,
                       speed_key: str | None = None) -> list[RoadLine]:  # fmt: skip
    """The road lines of a GeoJSON file (:func:`read_road_labels`) in the frame's metric CRS, with
    great-circle segment lengths and, with ``speed_key``, each line's speed (m/s)."""
    lines = []
    for geometry, properties in zip(labels.geometries, labels.properties, strict=True):
        speed = _speed(properties, speed_key, path)
        lon_lat, metres = _to_lon_lat(geometry, source), frame.to_metres([geometry], source)[0]
        for part, part_metres in zip(shapely.get_parts(lon_lat), shapely.get_parts(metres), strict=True):
            degrees, vertices = shapely.get_coordinates(part), shapely.get_coordinates(part_metres)
            lines.append(RoadLine(vertices, great_circle_lengths(degrees), speed))
    return lines


def geojson_graph(lines: list[RoadLine], keep_loops: bool = False, first_id: int = TRUTH_FIRST_ID
                  ) -> nx.MultiGraph:  # fmt: skip
    """The graph of GeoJSON road lines (module docstring), nodes numbered from ``first_id``; ``keep_loops``
    as :func:`datamodules.spacenet.roads.graph.without_repeated_edges`."""
    undirected = simplified(vertex_graph(lines, first_id)).to_undirected()
    return without_short_components(
        without_repeated_edges(undirected, keep_loops), GEOJSON_MIN_LENGTH, GEOJSON_MAX_NODES_CHECKED
    )


def geojson_file_graph(path: Path, frame: MetricFrame, keep_loops: bool = False, speed_key: str | None = None,
                       first_id: int = TRUTH_FIRST_ID) -> nx.MultiGraph:  # fmt: skip
    """The graph of a GeoJSON file of road lines (a tile's labels, or a proposal numbered from
    ``GEOJSON_PROPOSAL_FIRST_ID``)."""
    labels, source = read_road_labels(path)
    return geojson_graph(geojson_road_lines(labels, source, frame, path, speed_key), keep_loops, first_id)


def _pixel_vertex_graph(pixel_lines: list[shapely.LineString], speeds: list) -> nx.MultiGraph:
    """apls.py's ``wkt_list_to_nodes_edges`` and ``nodes_edges_to_G``: nodes at distinct pixel vertices,
    one edge per new segment with its length along its line (``pixel_length``)."""
    graph, nodes, seen = nx.MultiDiGraph(), {}, set()
    for line, speed in zip(pixel_lines, speeds, strict=True):
        vertices = [(float(x), float(y)) for x, y in shapely.get_coordinates(line)]
        along = shapely.line_locate_point(line, shapely.points(vertices))
        for index, vertex in enumerate(vertices):
            if vertex not in nodes:
                nodes[vertex] = PIXEL_FIRST_ID + len(nodes)
                graph.add_node(nodes[vertex], x=vertex[0], y=vertex[1])
            previous = vertices[index - 1]
            if index == 0 or (vertex, previous) in seen or (previous, vertex) in seen:
                continue
            seen.add((vertex, previous))
            pixel_length = abs(along[index] - along[index - 1])
            graph.add_edge(nodes[previous], nodes[vertex], pixel_length=pixel_length, speed=speed)
    return graph.to_undirected()


def pixel_graph(pixel_lines: list[shapely.LineString], frame: MetricFrame, speeds: list | None = None
                ) -> nx.MultiGraph:  # fmt: skip
    """The graph of road lines in pixel coordinates (LineStrings; module docstring), in the frame's metric
    CRS; ``speeds`` (m/s, one per line) for travel times."""
    parts = [part for line in pixel_lines for part in shapely.get_parts(line) if not part.is_empty]
    part_speeds = [speed for line, speed in zip(pixel_lines, speeds or [None] * len(pixel_lines), strict=True)
                   for part in shapely.get_parts(line) if not part.is_empty]  # fmt: skip
    graph = without_short_components(
        _pixel_vertex_graph(parts, part_speeds), PIXEL_MIN_LENGTH, PIXEL_MAX_NODES_CHECKED, "pixel_length"
    )
    nodes = list(graph.nodes)
    if nodes:
        pixels = shapely.points([(graph.nodes[n]["x"], graph.nodes[n]["y"]) for n in nodes])
        for node, point in zip(nodes, frame.pixels_to_metres(list(pixels)), strict=True):
            graph.nodes[node].update(x=point.x, y=point.y)
    for u, v, data in graph.edges(data=True):
        data["length"] = float(np.hypot(graph.nodes[u]["x"] - graph.nodes[v]["x"],
                                        graph.nodes[u]["y"] - graph.nodes[v]["y"]))  # fmt: skip
    # apls.py rebuilds the graph from its edge list when it projects it, which orders each node's
    # neighbours as a copy does; simplification follows that order
    out = simplified(graph.copy().to_directed()).to_undirected().copy()
    for u, v, data in out.edges(data=True):
        data.setdefault("geometry", node_line(out, u, v))
    return out
