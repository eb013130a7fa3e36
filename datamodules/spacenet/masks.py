"""Label masks of SpaceNet tiles: footprints burned with ``rasterio.features.rasterize`` on the tile's
grid (pixel-centre rule), roads buffered, optional building edges, no-data pixels marked, and a disk
cache keyed by the files and the settings so a mask is rasterised once."""

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio.features
import shapely
from rasterio.windows import Window

from datamodules.spacenet.labels import LINEAR, POLYGONAL, Labels, read_labels
from datamodules.spacenet.layouts import TilePair
from datamodules.spacenet.rasters import RasterInfo, read_valid
from lightning_app.errors import UserInputError

BACKGROUND, BUILDING, EDGE = 0, 1, 2


@dataclass(frozen=True)
class MaskSettings:
    """How a label file becomes a mask.

    Args:
        target: 'buildings' (polygons) or 'roads' (line strings buffered by ``road_buffer``).
        classes: 'binary' (0 background, 1 building/road) or 'three_class' (adds 2 for the inner
            ``edge_width`` pixels of each building, which separates touching buildings).
        edge_width: width of the building edge class in pixels.
        road_buffer: distance burned on each side of a road's centre line (2 m is SpaceNet's convention,
            ``cv2.line`` thickness 16 px in Macura (2020) is 8 px).
        road_buffer_unit: 'm' (needs a projected CRS in metres) or 'px'.
        nodata: 'ignore' marks pixels where the image has no data with ``ignore_index``; 'background'
            sets them to 0 (Lim et al.'s rule).
        ignore_index: mask value of ignored pixels.
    """

    target: Literal["buildings", "roads"] = "buildings"
    classes: Literal["binary", "three_class"] = "binary"
    edge_width: float = 2.0
    road_buffer: float = 2.0
    road_buffer_unit: Literal["m", "px"] = "m"
    nodata: Literal["ignore", "background"] = "ignore"
    ignore_index: int = 255

    def __post_init__(self) -> None:
        if self.target == "roads" and self.classes != "binary":
            raise UserInputError("data.mask_classes='three_class' is for buildings; road masks are binary")
        if not 0 <= self.ignore_index <= 255 or self.ignore_index in (BACKGROUND, BUILDING, EDGE):
            raise UserInputError(f"data.ignore_index={self.ignore_index} must be in 3..255")


def _pixel_size(info: RasterInfo) -> float:
    return abs(info.transform.a)


def _road_shapes(labels: Labels, info: RasterInfo, settings: MaskSettings) -> list:
    if settings.road_buffer_unit == "m":
        if info.crs is None or info.crs.linear_units not in ("metre", "meter"):
            raise UserInputError(
                f"data.road_buffer_unit='m' needs a projected CRS in metres; {info.path.name} is in "
                f"{info.crs}. Use road_buffer_unit: px"
            )
        distance = settings.road_buffer
    else:
        distance = settings.road_buffer * _pixel_size(info)
    return [(line.buffer(distance), BUILDING) for line in labels.geometries]


def _building_shapes(labels: Labels, info: RasterInfo, settings: MaskSettings) -> list:
    shapes = [(polygon, BUILDING) for polygon in labels.geometries]
    if settings.classes == "three_class":
        inset = settings.edge_width * _pixel_size(info)
        shapes += [(polygon.difference(polygon.buffer(-inset)), EDGE) for polygon in labels.geometries]
    return shapes


def rasterize_mask(pair: TilePair, info: RasterInfo, settings: MaskSettings) -> tuple[np.ndarray, Labels]:
    """The uint8 (H, W) mask of ``pair`` on its image's grid, and the labels it was burned from."""
    roads = settings.target == "roads"
    labels = read_labels(pair.label, info.crs, LINEAR if roads else POLYGONAL)
    tile = shapely.box(*info.bounds)
    labels.outside = sum(not geometry.intersects(tile) for geometry in labels.geometries)
    shapes = (_road_shapes if roads else _building_shapes)(labels, info, settings)
    shapes = [(shape, value) for shape, value in shapes if not shape.is_empty]
    mask = np.zeros((info.height, info.width), dtype=np.uint8)
    if shapes:
        rasterio.features.rasterize(shapes, out=mask, transform=info.transform, all_touched=False)
    valid = read_valid(pair.image, Window(0, 0, info.width, info.height))
    mask[~valid] = settings.ignore_index if settings.nodata == "ignore" else BACKGROUND
    return mask, labels


def _fingerprint(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class MaskCache:
    """Masks stored as ``.npy`` files in ``folder``, named by a hash of the label and image files (path,
    size, modification time) and of the settings; a changed file or setting gives a new mask."""

    def __init__(self, folder: str | Path, settings: MaskSettings) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self.paths: dict[str, Path] = {}  # mask file per tile id, for reads

    def path(self, pair: TilePair) -> Path:
        key = {"label": _fingerprint(pair.label), "image": _fingerprint(pair.image), **asdict(self.settings)}
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        return self.folder / f"{pair.tile_id}_{digest}.npy"

    def ensure(self, pair: TilePair, info: RasterInfo) -> Labels | None:
        """Rasterise the mask of ``pair`` unless it is cached; the labels when it was rasterised."""
        path = self.path(pair)
        if path.is_file():
            return None
        mask, labels = rasterize_mask(pair, info, self.settings)
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        with partial.open("wb") as file:
            np.save(file, mask)
        os.replace(partial, path)  # atomic: another process never sees half a file
        return labels

    def read(self, pair: TilePair, window: Window) -> np.ndarray:
        """The cached mask of ``pair`` inside ``window`` (it must have been ensured)."""
        if pair.tile_id not in self.paths:  # the files' fingerprint, taken once per process and tile
            self.paths[pair.tile_id] = self.path(pair)
        rows, cols = window.toslices()
        return np.array(_mapped(self.paths[pair.tile_id])[rows, cols])


@functools.lru_cache(maxsize=256)
def _mapped(path: Path) -> np.ndarray:
    """The mask file at ``path`` memory-mapped, kept open for the next crop of the tile (a changed label,
    image or setting names another file, so a kept map is never stale)."""
    return np.load(path, mmap_mode="r")
