"""Prediction output on the source tile's georeference: a GeoTIFF of probabilities or classes, and
building polygons (``rasterio.features.shapes``) as GeoJSON in the raster's CRS, each feature also
carrying its pixel-coordinate WKT (``PolygonWKT_Pix``, SpaceNet's CSV column)."""

import json
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import shapely
from affine import Affine
from shapely.affinity import affine_transform
from shapely.geometry import mapping

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


def mask_polygons(mask: np.ndarray, min_area: float = 0.0) -> list[shapely.Polygon]:
    """Polygons (pixel coordinates) of the connected True regions of ``mask`` of at least ``min_area``
    pixels."""
    binary = np.asarray(mask, dtype=np.uint8)
    polygons = [
        shapely.geometry.shape(geometry)
        for geometry, _ in rasterio.features.shapes(
            binary, mask=binary.astype(bool), transform=Affine.identity()
        )
    ]
    return [polygon for polygon in polygons if polygon.area >= min_area]


def to_crs_coordinates(polygon: shapely.Polygon, transform: Affine) -> shapely.Polygon:
    """``polygon`` from pixel coordinates to the raster's CRS via its affine ``transform``."""
    return affine_transform(
        polygon, [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]
    )


def write_polygons_geojson(path: str | Path, polygons: list[shapely.Polygon], info: RasterInfo) -> Path:
    """A FeatureCollection of ``polygons`` (pixel coordinates) in the tile's CRS, each feature with its
    ``PolygonWKT_Pix`` and ``area_px``."""
    features = [
        {
            "type": "Feature",
            "properties": {"id": index, "PolygonWKT_Pix": polygon.wkt, "area_px": polygon.area},
            "geometry": mapping(to_crs_coordinates(polygon, info.transform)),
        }
        for index, polygon in enumerate(polygons)
    ]
    collection = {"type": "FeatureCollection", "features": features}
    if info.crs is not None:
        collection["crs"] = {"type": "name", "properties": {"name": info.crs.to_string()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(collection))
    return path
