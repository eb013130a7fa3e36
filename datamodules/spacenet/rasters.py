"""Reading GeoTIFF tiles with rasterio: header information, and windowed reads of chosen bands with the
no-data mask, every failure naming the file."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch.utils.data
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from lightning_app.errors import UserInputError, describe

# GDAL lists a tile's folder on every open to look for side-car files; SpaceNet folders hold thousands.
GDAL_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


@dataclass(frozen=True)
class RasterInfo:
    """What the header of a tile says: size, band count, dtype, georeference."""

    path: Path
    height: int
    width: int
    count: int
    dtype: str
    crs: CRS | None
    transform: Affine

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the raster's CRS."""
        left, top = self.transform @ (0, 0)
        right, bottom = self.transform @ (self.width, self.height)
        return min(left, right), min(top, bottom), max(left, right), max(top, bottom)


_worker_environment: rasterio.Env | None = None


def keep_worker_environment() -> None:
    """In a DataLoader worker, enter one GDAL environment with ``GDAL_OPTIONS`` for the worker's lifetime
    (once): each read's own ``rasterio.Env`` is then nested, which costs a tenth of a fresh one (about
    0.5 ms, a tenth of reading a 512 px window). The main process's GDAL state is left alone."""
    global _worker_environment
    if _worker_environment is None and torch.utils.data.get_worker_info() is not None:
        _worker_environment = rasterio.Env(**GDAL_OPTIONS)
        _worker_environment.__enter__()


def _unreadable(path: Path, error: Exception) -> UserInputError:
    return UserInputError(f"cannot read GeoTIFF {path}: {describe(error)}")


def read_info(path: Path) -> RasterInfo:
    """The header of the GeoTIFF at ``path``; a :class:`UserInputError` naming it if it is unreadable."""
    try:
        with rasterio.Env(**GDAL_OPTIONS), rasterio.open(path) as source:
            return RasterInfo(
                Path(path),
                source.height,
                source.width,
                source.count,
                source.dtypes[0],
                source.crs,
                source.transform,
            )
    except rasterio.errors.RasterioError as error:
        raise _unreadable(path, error) from error


def check_bands(bands: list[int] | None, info: RasterInfo) -> None:
    """An error when ``bands`` (0-based) asks for a band the tile does not have."""
    if bands is not None and (not bands or min(bands) < 0 or max(bands) >= info.count):
        raise UserInputError(
            f"data.bands={bands}: {info.path.name} has {info.count} bands "
            f"(0-based indices 0..{info.count - 1})"
        )


def read_window(
    path: Path, bands: list[int] | None, window: Window, dtype: str | None = "float32"
) -> np.ndarray:
    """``bands`` (0-based, in that order; all when None) of ``window`` (inside the tile) as (C, h, w) of
    ``dtype`` (None: the file's own)."""
    try:
        with rasterio.Env(**GDAL_OPTIONS), rasterio.open(path) as source:
            indexes = [band + 1 for band in bands] if bands is not None else list(source.indexes)
            return source.read(indexes, window=window, out_dtype=dtype)
    except rasterio.errors.RasterioError as error:
        raise _unreadable(path, error) from error


def read_valid(path: Path, window: Window) -> np.ndarray:
    """The valid-data mask (h, w) of ``window``: False where the tile has no data (GDAL's dataset mask:
    the nodata value in every band, or an internal mask)."""
    try:
        with rasterio.Env(**GDAL_OPTIONS), rasterio.open(path) as source:
            return source.dataset_mask(window=window) > 0
    except rasterio.errors.RasterioError as error:
        raise _unreadable(path, error) from error
