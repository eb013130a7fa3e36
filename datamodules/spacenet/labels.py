"""SpaceNet GeoJSON label files: parsed, reprojected to the raster's CRS, invalid geometries repaired.

GeoJSON without a ``crs`` member is in longitude/latitude (RFC 7946); SpaceNet's older files name their
CRS in a ``crs`` member (e.g. ``urn:ogc:def:crs:EPSG::32631``), which is honoured.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.warp import transform
from shapely.geometry.base import BaseGeometry

from lightning_app.errors import UserInputError, describe

GEOJSON_DEFAULT_CRS = "OGC:CRS84"
POLYGONAL = ("Polygon", "MultiPolygon")
LINEAR = ("LineString", "MultiLineString")


@dataclass
class Labels:
    """The geometries of one label file in the raster's CRS, and what had to be done to them."""

    geometries: list[BaseGeometry] = field(default_factory=list)
    properties: list[dict] = field(default_factory=list)  # each geometry's feature properties
    repaired: int = 0
    dropped: int = 0  # features with no usable geometry of the expected kind
    outside: int = 0  # geometries that miss their tile altogether (counted when rasterised)


def read_geojson(path: Path) -> dict:
    """The parsed GeoJSON FeatureCollection at ``path``; an error naming the file otherwise."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserInputError(f"cannot read GeoJSON {path}: {describe(error)}") from error
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise UserInputError(f"GeoJSON {path} is not a FeatureCollection")
    return data


def geojson_crs(data: dict, path: Path) -> CRS:
    """The CRS named by the file's ``crs`` member, or longitude/latitude when it has none."""
    name = (data.get("crs") or {}).get("properties", {}).get("name", GEOJSON_DEFAULT_CRS)
    try:
        return CRS.from_user_input(name)
    except rasterio.errors.CRSError as error:
        raise UserInputError(f"GeoJSON {path}: unknown CRS {name!r} ({describe(error)})") from error


def _check_longitude_latitude(shapes: list[BaseGeometry], path: Path) -> None:
    left, bottom, right, top = shapely.total_bounds(np.asarray(shapes, dtype=object))
    if left < -180 or right > 180 or bottom < -90 or top > 90:
        raise UserInputError(
            f"GeoJSON {path} has no crs member, so its coordinates must be longitude/latitude, but they "
            f"span x {left:,.1f}..{right:,.1f}, y {bottom:,.1f}..{top:,.1f} (projected, e.g. UTM?): add a "
            'crs member naming their CRS, e.g. "crs": {"type": "name", "properties": {"name": '
            '"urn:ogc:def:crs:EPSG::32631"}}'
        )


def _reprojected(shapes: list[BaseGeometry], source: CRS, target: CRS, path: Path) -> list[BaseGeometry]:
    if not shapes or source == target:
        return shapes

    def transform_xy(xy: np.ndarray) -> np.ndarray:
        xs, ys = transform(source, target, xy[:, 0], xy[:, 1])
        return np.column_stack([xs, ys])

    try:
        return list(shapely.transform(np.asarray(shapes, dtype=object), transform_xy))
    except (rasterio.errors.RasterioError, ValueError) as error:
        raise UserInputError(
            f"GeoJSON {path}: cannot transform its geometries from {source} to the raster CRS {target} "
            f"({describe(error)})"
        ) from error


def _shape(geometry: dict) -> BaseGeometry | None:
    try:
        return shapely.geometry.shape(geometry)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, shapely.errors.GEOSException):
        return None


def _usable(shape: BaseGeometry, kinds: tuple[str, ...], labels: Labels) -> BaseGeometry | None:
    if shape.geom_type in POLYGONAL and not shape.is_valid:
        shape = shapely.make_valid(shape)
        labels.repaired += 1
    parts = shapely.get_parts(shape) if shape.geom_type == "GeometryCollection" else [shape]
    kept = [part for part in parts if part.geom_type in kinds and not part.is_empty]
    if len(kept) <= 1:
        return kept[0] if kept else None
    # unioning lines would node them (new vertices where they cross), which changes road graphs
    return shapely.union_all(kept) if kept[0].geom_type in POLYGONAL else shapely.multilinestrings(kept)


def read_labels(path: Path, raster_crs: CRS | None, kinds: tuple[str, ...] = POLYGONAL) -> Labels:
    """The geometries of the label file at ``path`` of the geometry ``kinds`` wanted, in ``raster_crs``.

    Invalid polygons are repaired with ``shapely.make_valid`` and counted; features whose geometry is
    missing, malformed or of another kind are counted as dropped.
    """
    data = read_geojson(path)
    features = data.get("features") or []
    shapes = [_shape(feature.get("geometry")) if isinstance(feature, dict) else None for feature in features]
    kept = [(shape, feature.get("properties") or {}) for shape, feature in zip(shapes, features, strict=True)
            if shape is not None and not shape.is_empty]  # fmt: skip
    parsed = [shape for shape, _ in kept]
    labels = Labels(dropped=len(features) - len(parsed))
    source = geojson_crs(data, path)
    if parsed and source == CRS.from_user_input(GEOJSON_DEFAULT_CRS):
        _check_longitude_latitude(parsed, path)
    if parsed and raster_crs is None:
        raise UserInputError(f"the tile of {path} has no CRS, so its labels cannot be placed on it")
    for shape, (_, properties) in zip(_reprojected(parsed, source, raster_crs, path), kept, strict=True):
        usable = _usable(shape, kinds, labels)
        if usable is None:
            labels.dropped += 1
        else:
            labels.geometries.append(usable)
            labels.properties.append(properties)
    return labels
