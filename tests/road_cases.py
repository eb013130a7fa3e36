"""Synthetic SpaceNet 3 road tiles for comparing APLS with CosmiQ's apls.py: each seed gives a truth
GeoJSON (longitude/latitude, SpaceNet 3's Las Vegas grid of 0.3 m pixels), a proposal derived from it as
GeoJSON and as a submission CSV (integer pixel coordinates), and the tile's GeoTIFF, built to exercise
every graph-building and snapping rule: roads split into features end to end (degree-2 joints) and at
crossings, T-junctions and dead ends, cul-de-sac loops hanging off one junction, repeated and reversed
lines, one-way lines, MultiLineStrings, a bridge, a short isolated piece; proposals jittered, shifted
across the snapping distance, broken, extended, with a false road and a crossing that does not meet.
Only the generator's own numbers decide the geometry (numpy's ``uniform`` and ``integers`` streams)."""

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

SIZE = 1300  # pixels, SpaceNet 3's tiles
TRANSFORM = Affine(2.7e-06, 0.0, -115.17, 0.0, -2.7e-06, 36.24)  # about 0.24 x 0.3 m pixels in Las Vegas
METRE = 1 / 0.3  # pixels
SPEEDS = (8.9408, 13.4112, 17.8816, 22.352)  # 20, 30, 40, 50 mph in m/s


@dataclass
class Feature:
    parts: list  # lists of (column, row) pixel vertices
    properties: dict = field(default_factory=dict)


@dataclass
class RoadCase:
    image_id: str
    truth: list[Feature]
    proposal: list[Feature]


def _grid(rng: np.random.Generator, roads: int | None) -> tuple[np.ndarray, list, list]:
    """Crossings (rows x columns of pixel positions), horizontal roads and vertical roads as vertex lists
    from tile edge to tile edge through their crossings, with a bend vertex between each two; ``roads``
    each way (3 to 5 when None)."""
    rows, cols = (int(rng.integers(3, 6)), int(rng.integers(3, 6))) if roads is None else (roads, roads)
    ys = np.sort(rng.uniform(150, SIZE - 150, rows))
    xs = np.sort(rng.uniform(150, SIZE - 150, cols))
    jitter = min(12.0, 0.2 * (SIZE - 300) / max(rows, cols))
    crossings = np.stack(np.meshgrid(xs, ys), axis=-1) + rng.uniform(-jitter, jitter, (rows, cols, 2))

    def road(points: np.ndarray, start, end) -> list:
        vertices = [tuple(start)]
        for point in points:
            previous = np.asarray(vertices[-1])
            bend = (previous + point) / 2 + rng.uniform(-6, 6, 2)
            vertices += [tuple(bend), tuple(point)]
        return [*vertices, tuple(end)]

    horizontal = [
        road(crossings[i], (0.0, crossings[i, 0, 1]), (SIZE, crossings[i, -1, 1])) for i in range(rows)
    ]
    vertical = [
        road(crossings[:, j], (crossings[0, j, 0], 0.0), (crossings[-1, j, 0], SIZE)) for j in range(cols)
    ]
    return crossings, horizontal, vertical


def _split(rng: np.random.Generator, road: list, drop: float) -> list[list]:
    """A road cut into features at random vertices (ends meet there), with some stretches between
    crossings dropped (dead ends and T-junctions)."""
    pieces, current, index = [], [road[0]], 1
    while index < len(road):
        current.append(road[index])
        inner = index < len(road) - 1
        if inner and index % 2 == 0 and index + 2 < len(road) and rng.uniform() < drop:
            pieces.append(current)  # the stretch to the next crossing is dropped
            current, index = [road[index + 2]], index + 3
            continue
        if inner and rng.uniform() < 0.25:
            pieces.append(current)
            current = [road[index]]
        index += 1
    pieces.append(current)
    return [piece for piece in pieces if len(piece) >= 2]


def _loop(rng: np.random.Generator, anchor: np.ndarray) -> list[Feature]:
    """A spur from ``anchor`` ending in a loop back to the spur's end (a cul-de-sac loop)."""
    angle = rng.uniform(0, 2 * np.pi)
    end = anchor + 140 * np.array([np.cos(angle), np.sin(angle)])
    centre = end + 55 * np.array([np.cos(angle), np.sin(angle)])
    turns = np.linspace(angle + np.pi, angle + 3 * np.pi, 9)
    ring = [tuple(centre + 55 * np.array([np.cos(t), np.sin(t)])) for t in turns]
    ring[0] = ring[-1] = tuple(end)
    spur = [tuple(anchor), tuple((anchor + end) / 2), tuple(end)]
    if rng.uniform() < 0.5:
        return [Feature([spur]), Feature([ring])]
    return [Feature([spur[:-1] + ring])]


def _truth(rng: np.random.Generator, roads: int | None, repeats: bool) -> list[Feature]:
    crossings, horizontal, vertical = _grid(rng, roads)
    features = [Feature([piece]) for road in horizontal + vertical for piece in _split(rng, road, 0.15)]
    if repeats:  # a loop hanging off a crossing, and a line given twice
        features += _loop(
            rng, crossings[int(rng.integers(len(crossings))), int(rng.integers(crossings.shape[1]))]
        )
        repeated = features[int(rng.integers(len(features)))]
        features.append(
            Feature([list(reversed(repeated.parts[0])) if rng.uniform() < 0.5 else list(repeated.parts[0])])
        )
    features.append(Feature([[(30.0, 40.0), (30.0 + 3 * METRE, 40.0)]]))  # a 3 m piece on its own
    for feature in features:
        feature.properties["inferred_speed_mps"] = float(SPEEDS[int(rng.integers(len(SPEEDS)))])
        if rng.uniform() < 0.1:
            feature.properties["oneway"] = "yes" if rng.uniform() < 0.7 else "-1"
    first, second = int(rng.integers(len(features))), int(rng.integers(len(features)))
    if first != second:  # two features as one MultiLineString
        features[first].parts += features[second].parts
        del features[second]
    bridge_row = rng.uniform(200, SIZE - 200)
    features.append(Feature([[(0.0, bridge_row), (SIZE, bridge_row + rng.uniform(-80, 80))]],
                            {"inferred_speed_mps": SPEEDS[-1]}))  # fmt: skip
    return features


def _proposal(rng: np.random.Generator, truth: list[Feature]) -> list[Feature]:
    jitter: dict = {}

    def moved(vertex: tuple, shift: np.ndarray) -> tuple:
        if vertex not in jitter:  # shared vertices move together, so crossings stay crossings
            jitter[vertex] = rng.uniform(-1.5 * METRE, 1.5 * METRE, 2)
        x, y = np.asarray(vertex) + jitter[vertex] + shift
        return float(np.clip(x, 0, SIZE)), float(np.clip(y, 0, SIZE))

    proposal = []
    for feature in truth:
        if rng.uniform() < 0.12:
            continue  # a road the proposal misses
        shift = np.zeros(2)
        if rng.uniform() < 0.15:  # a road drawn beside the truth, within or beyond the 4 m snap
            shift = rng.uniform(3 * METRE, 5 * METRE) * np.array(
                [1.0, 0.0] if rng.uniform() < 0.5 else [0.0, 1.0]
            )
        parts = []
        for part in feature.parts:
            vertices = [moved(vertex, shift) for vertex in part]
            if rng.uniform() < 0.1 and len(vertices) >= 4:  # broken in the middle
                middle = len(vertices) // 2
                parts += [vertices[:middle], vertices[middle:]]
                continue
            if rng.uniform() < 0.15:  # a dead end drawn too long
                end, before = np.asarray(vertices[-1]), np.asarray(vertices[-2])
                direction = (end - before) / max(np.linalg.norm(end - before), 1e-9)
                vertices.append(tuple(end + direction * rng.uniform(5, 15) * METRE))
            parts.append(vertices)
        proposal.append(Feature(parts, {"inferred_speed_mps": feature.properties["inferred_speed_mps"]}))
    start = rng.uniform(100, SIZE - 100, 2)
    proposal.append(Feature([[tuple(start), tuple(start + rng.uniform(-300, 300, 2))]],
                            {"inferred_speed_mps": SPEEDS[0]}))  # a false road  # fmt: skip
    return proposal


def road_case(seed: int, roads: int | None = None, repeats: bool = True, proposal_roads: int | None = None
              ) -> RoadCase:  # fmt: skip
    """The case of ``seed`` (module docstring): ``roads`` each way in the truth's grid (3 to 5 when None),
    without its loop and repeated line unless ``repeats``; the proposal derived from the truth, or a grid
    of its own with ``proposal_roads`` each way."""
    rng = np.random.default_rng(seed)
    truth = _truth(rng, roads, repeats)
    proposal = _proposal(rng, truth if proposal_roads is None else _truth(rng, proposal_roads, repeats))
    return RoadCase(f"AOI_2_Vegas_img{seed}", truth, proposal)


def _geojson(features: list[Feature], path: Path) -> Path:
    def lon_lat(part):
        return [list(TRANSFORM @ vertex) for vertex in part]

    def geometry(feature: Feature) -> dict:
        if len(feature.parts) == 1:
            return {"type": "LineString", "coordinates": lon_lat(feature.parts[0])}
        return {"type": "MultiLineString", "coordinates": [lon_lat(part) for part in feature.parts]}

    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": feature.properties, "geometry": geometry(feature)}
        for feature in features]}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(collection))
    return path


def csv_rows(case: RoadCase) -> list[tuple[str, str]]:
    """The proposal as a submission CSV's rows: each part a row, vertices rounded to whole pixels."""
    rows = []
    for feature in case.proposal:
        for part in feature.parts:
            vertices = ", ".join(f"{round(x):.1f} {round(y):.1f}" for x, y in part)
            rows.append((case.image_id, f"LINESTRING ({vertices})"))
    return rows


def write_case(case: RoadCase, folder: Path) -> None:
    """``truth/``, ``proposal/`` (GeoJSON), ``images/`` (the GeoTIFF) and ``proposal.csv`` rows appended."""
    _geojson(case.truth, folder / "truth" / f"{case.image_id}.geojson")
    _geojson(case.proposal, folder / "proposal" / f"{case.image_id}.geojson")
    image = folder / "images" / f"{case.image_id}.tif"
    image.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "height": SIZE, "width": SIZE, "count": 1, "dtype": "uint8",
               "crs": "EPSG:4326", "transform": TRANSFORM, "compress": "deflate"}  # fmt: skip
    with rasterio.open(image, "w", **profile) as target:
        target.write(np.zeros((1, SIZE, SIZE), dtype=np.uint8))
    submission = folder / "proposal.csv"
    new = not submission.exists()
    with submission.open("a", newline="") as file:
        writer = csv.writer(file)
        if new:
            writer.writerow(("ImageId", "WKT_Pix"))
        writer.writerows(csv_rows(case))


def write_cases(seeds, folder: Path, **options) -> Path:
    for seed in seeds:
        write_case(road_case(seed, **options), folder)
    return folder
