"""Where road lengths are measured: a metric CRS for a tile, and the maps from pixels and from the tile's
CRS into it.

SpaceNet 3 tiles are in longitude/latitude (EPSG:4326), so lengths need a projection: the tile's own CRS
when it is projected in metres, else the UTM zone of the tile's centre (as CosmiQ's ``apls`` projects
its graphs with osmnx).
"""

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform

from datamodules.spacenet.geo_output import apply_affine
from datamodules.spacenet.rasters import RasterInfo

LON_LAT = CRS.from_epsg(4326)
IDENTITY = Affine.identity()


def utm_crs(longitude: float, latitude: float) -> CRS:
    """The UTM zone (WGS 84) holding a longitude/latitude."""
    zone = int((longitude + 180) // 6) % 60 + 1
    return CRS.from_epsg((32600 if latitude >= 0 else 32700) + zone)


def is_metric(crs: CRS | None) -> bool:
    return crs is not None and crs.is_projected and crs.linear_units in ("metre", "meter")


@dataclass(frozen=True)
class MetricFrame:
    """A tile's metric CRS (``metric``) and its own CRS (``source``); ``pixels`` maps pixel coordinates
    (column, row) to ``source``."""

    source: CRS
    metric: CRS
    pixels: Affine = IDENTITY

    @classmethod
    def around(cls, source: CRS, centre: tuple[float, float], pixels: Affine = IDENTITY):
        """The frame of geometries in ``source`` around ``centre`` (x, y in ``source``)."""
        if is_metric(source):
            return cls(source, source, pixels)
        (longitude,), (latitude,) = transform(source, LON_LAT, [centre[0]], [centre[1]])
        return cls(source, utm_crs(longitude, latitude), pixels)

    @classmethod
    def of_tile(cls, info: RasterInfo) -> "MetricFrame":
        left, bottom, right, top = info.bounds
        return cls.around(info.crs, ((left + right) / 2, (bottom + top) / 2), info.transform)

    def to_metres(self, geometries: list, crs: CRS | None = None) -> list:
        """``geometries`` in ``crs`` (the tile's CRS when None), in the metric CRS."""
        source = self.source if crs is None else crs
        if not geometries or source == self.metric:
            return list(geometries)

        def project(xy: np.ndarray) -> np.ndarray:
            xs, ys = transform(source, self.metric, xy[:, 0], xy[:, 1])
            return np.column_stack([xs, ys])

        return list(shapely.transform(np.asarray(geometries, dtype=object), project))

    def pixels_to_metres(self, geometries: list) -> list:
        """``geometries`` in pixel coordinates, in the metric CRS."""
        return self.to_metres([apply_affine(geometry, self.pixels) for geometry in geometries])
