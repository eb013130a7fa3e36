"""Prediction output on the source tile's georeference: a GeoTIFF of probabilities or classes, and
building polygons (``rasterio.features.shapes``) as GeoJSON in the raster's CRS, each feature also
carrying its pixel-coordinate WKT (``PolygonWKT_Pix``, SpaceNet's CSV column)."""

import csv
import json
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import scipy.ndimage
import shapely
from affine import Affine
from shapely.affinity import affine_transform
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from datamodules.spacenet.building_score import PROPOSAL_COLUMNS
from datamodules.spacenet.rasters import RasterInfo


def write_geotiff(path: str | Path, array: np.ndarray, info: RasterInfo) -> Path:
    """Write ``array`` ((H, W) or (C, H, W), the tile's size) with the tile's CRS and transform."""
    bands = array[None] if array.ndim == 2 else array
    if bands.shape[1:] != (info.height, info.width):
        raise ValueError(f"array {bands.shape[1:]} does not match the tile {info.height} x {info.width}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "height": info.height,
        "width": info.width,
        "count": bands.shape[0],
        "dtype": bands.dtype.name,
        "crs": info.crs,
        "transform": info.transform,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as target:
        target.write(bands)
    return path


ScoredPolygon = tuple[shapely.Polygon, float]


def scored_polygons(values: np.ndarray, threshold: float, min_area: float = 0.0) -> list[ScoredPolygon]:
    """Polygons (pixel coordinates) of the 4-connected regions of ``values > threshold`` of at least
    ``min_area`` pixels, each with the mean of ``values`` inside it (its confidence)."""
    regions, count = scipy.ndimage.label(values > threshold)
    if count == 0:
        return []
    means = scipy.ndimage.mean(values, regions, index=np.arange(1, count + 1))
    shapes = rasterio.features.shapes(
        regions.astype(np.int32), mask=regions > 0, transform=Affine.identity(), connectivity=4
    )
    scored = [(shapely.geometry.shape(shape), float(means[int(region) - 1])) for shape, region in shapes]
    return [(polygon, confidence) for polygon, confidence in scored if polygon.area >= min_area]


def mask_polygons(mask: np.ndarray, min_area: float = 0.0) -> list[shapely.Polygon]:
    """Polygons (pixel coordinates) of the connected True regions of ``mask`` of at least ``min_area``
    pixels."""
    return [polygon for polygon, _ in scored_polygons(np.asarray(mask, dtype=np.float32), 0.5, min_area)]


def proposal_rows(image_id: str, polygons: list[ScoredPolygon]) -> list[tuple]:
    """SpaceNet proposal CSV rows (ImageId, BuildingId, PolygonWKT_Pix, Confidence) of an image's scored
    polygons; one ``POLYGON EMPTY`` row for an image without any."""
    if not polygons:
        return [(image_id, -1, "POLYGON EMPTY", 1.0)]
    return [(image_id, number, polygon.wkt, score) for number, (polygon, score) in enumerate(polygons)]


def write_proposal_csv(
    path: str | Path, rows: list[tuple], columns: tuple[str, ...] = PROPOSAL_COLUMNS
) -> Path:
    """The proposal CSV SpaceNet's scorer (and ``python -m lightning_app.evaluate``) reads: buildings'
    ``PROPOSAL_COLUMNS`` or roads' ``ImageId,WKT_Pix``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def apply_affine(geometry: BaseGeometry, transform: Affine) -> BaseGeometry:
    """``geometry`` mapped by ``transform``: a raster's transform takes pixel coordinates to its CRS, the
    inverse (``~transform``) back."""
    return affine_transform(
        geometry, [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]
    )


def write_features_geojson(path: str | Path, shapes: list[BaseGeometry], info: RasterInfo,
                           properties: list[dict]) -> Path:  # fmt: skip
    """A FeatureCollection of ``shapes`` (pixel coordinates) in the tile's CRS, with ``properties``."""
    features = [
        {"type": "Feature", "properties": values, "geometry": mapping(apply_affine(shape, info.transform))}
        for shape, values in zip(shapes, properties, strict=True)
    ]
    collection = {"type": "FeatureCollection", "features": features}
    if info.crs is not None:
        collection["crs"] = {"type": "name", "properties": {"name": info.crs.to_string()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(collection))
    return path


def write_polygons_geojson(path: str | Path, polygons: list[shapely.Polygon], info: RasterInfo) -> Path:
    """A FeatureCollection of ``polygons`` (pixel coordinates) in the tile's CRS, each feature with its
    ``PolygonWKT_Pix`` and ``area_px``."""
    properties = [
        {"id": index, "PolygonWKT_Pix": polygon.wkt, "area_px": polygon.area}
        for index, polygon in enumerate(polygons)
    ]
    return write_features_geojson(path, polygons, info, properties)


def road_rows(image_id: str, lines: list[shapely.LineString]) -> list[tuple]:
    """SpaceNet 3 submission rows (ImageId, WKT_Pix) of an image's road lines; one ``LINESTRING EMPTY``
    row for an image without any."""
    return [(image_id, line.wkt) for line in lines] or [(image_id, "LINESTRING EMPTY")]
