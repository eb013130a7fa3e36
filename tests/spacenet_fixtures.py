"""Synthetic SpaceNet data in TorchGeo's style: small GeoTIFFs in a UTM CRS and GeoJSON labels whose
footprints cover known pixels, in the folder layouts of SpaceNet 2, 3 and 6."""

import json
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.warp import transform_geom
from shapely.geometry import mapping

UTM = "EPSG:32631"  # Rotterdam's zone, as SpaceNet 6
ORIGIN = (600_000.0, 5_755_000.0)
PIXEL = 0.5  # metres
SN6_STEM = "SN6_Train_AOI_11_Rotterdam_{product}_20190804111224_20190804111453_tile_{tile}"


def tile_transform(row_offset: int = 0, col_offset: int = 0) -> Affine:
    """The grid of a tile whose top-left pixel is (row_offset, col_offset) pixels from ORIGIN."""
    return Affine(PIXEL, 0, ORIGIN[0] + col_offset * PIXEL, 0, -PIXEL, ORIGIN[1] - row_offset * PIXEL)


def write_tile(path: Path, pixels: np.ndarray, transform: Affine, nodata: float | None = 0) -> Path:
    """A GeoTIFF of ``pixels`` (C, H, W) in UTM on ``transform``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "height": pixels.shape[1],
        "width": pixels.shape[2],
        "count": pixels.shape[0],
        "dtype": pixels.dtype.name,
        "crs": UTM,
        "transform": transform,
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as target:
        target.write(pixels)
    return path


def pixel_box(transform: Affine, row: int, col: int, height: int, width: int) -> shapely.Polygon:
    """The footprint (map coordinates) of pixels rows row..row+height-1, cols col..col+width-1."""
    left, top = transform @ (col, row)
    right, bottom = transform @ (col + width, row + height)
    return shapely.box(left, bottom, right, top)


def write_geojson(path: Path, geometries: list, crs: str = "EPSG:4326") -> Path:
    """A FeatureCollection of ``geometries`` (shapely, in UTM) written in ``crs``: EPSG:4326 without a
    ``crs`` member (RFC 7946), any other CRS named in one, as SpaceNet's older files do."""
    features = []
    for index, geometry in enumerate(geometries):
        shape = mapping(geometry) if hasattr(geometry, "geom_type") else geometry
        if crs == "EPSG:4326" and hasattr(geometry, "geom_type"):
            shape = transform_geom(UTM, "EPSG:4326", shape)
        features.append({"type": "Feature", "properties": {"Building_ID": index}, "geometry": shape})
    collection = {"type": "FeatureCollection", "features": features}
    if crs != "EPSG:4326":
        collection["crs"] = {"type": "name", "properties": {"name": crs}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(collection))
    return path


def rgb_pixels(size: int, seed: int) -> np.ndarray:
    """uint8 3-band pixels in 1..255 (0 is no data)."""
    return np.random.default_rng(seed).integers(1, 256, (3, size, size), dtype=np.uint8)


def make_spacenet6(
    root: Path,
    tiles: int = 4,
    size: int = 64,
    product: str = "PS-RGB",
    pixels=rgb_pixels,
    spacing: int | None = None,
) -> Path:
    """``root/AOI_11_Rotterdam`` with ``tiles`` tiles side by side (``spacing`` px apart, default
    ``size``: touching), each with one 8 x 8 px building at (10, 10) given in EPSG:4326."""
    aoi = root / "AOI_11_Rotterdam"
    for tile in range(tiles):
        transform = tile_transform(0, tile * (spacing or size))
        write_tile(
            aoi / product / f"{SN6_STEM.format(product=product, tile=tile)}.tif",
            pixels(size, tile),
            transform,
        )
        label = aoi / "geojson_buildings" / f"{SN6_STEM.format(product='Buildings', tile=tile)}.geojson"
        write_geojson(label, [pixel_box(transform, 10, 10, 8, 8)])
    return aoi


def noise_bands(size: int, seed: int) -> np.ndarray:
    """8-band uint16 pixels with 11-bit values in 1..2047 (0 is no data)."""
    return np.random.default_rng(seed).integers(1, 2048, (8, size, size), dtype=np.uint16)


def make_spacenet3(
    root: Path, tiles: int = 4, size: int = 64, pixels=noise_bands, overhang: float = 5.0
) -> Path:
    """``root/AOI_5_Khartoum`` in SpaceNet 3's layout: 8-band uint16 PS-MS tiles (11-bit values) side by
    side, each crossed by one horizontal road along row ``size // 2`` that runs ``overhang`` metres past
    both sides."""
    aoi = root / "AOI_5_Khartoum"
    for tile in range(tiles):
        transform = tile_transform(0, tile * size)
        bands = pixels(size, tile)
        write_tile(aoi / "PS-MS" / f"SN3_roads_train_AOI_5_Khartoum_PS-MS_img{tile}.tif", bands, transform)
        left, top = transform.c, transform.f
        row_y = top - size / 4
        road = shapely.LineString([(left - overhang, row_y), (left + size * PIXEL + overhang, row_y)])
        write_geojson(
            aoi / "geojson_roads" / f"SN3_roads_train_AOI_5_Khartoum_geojson_roads_img{tile}.geojson", [road]
        )
    return aoi
