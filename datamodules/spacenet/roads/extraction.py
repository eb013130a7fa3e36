"""Road centre lines from a road probability map, as the SpaceNet 3 winners extracted them: threshold,
remove small objects and holes, skeletonise (scikit-image), turn the skeleton into a graph (sknw), and
simplify each edge's pixel path (Douglas-Peucker) keeping its ends, so intersections stay shared."""

from dataclasses import dataclass

import numpy as np
import shapely
import sknw
from skimage.morphology import remove_small_holes, remove_small_objects, skeletonize

from lightning_app.errors import check_not_negative


@dataclass(frozen=True)
class RoadExtraction:
    """How a probability map becomes road lines.

    Args:
        threshold: probability above which a pixel is road.
        min_object_px: road regions of at most this many pixels are removed (noise).
        max_hole_px: holes of at most this many pixels inside roads are filled (they would make loops).
        simplify_px: Douglas-Peucker tolerance of the lines, in pixels.
    """

    threshold: float = 0.5
    min_object_px: int = 100
    max_hole_px: int = 50
    simplify_px: float = 1.0

    def __post_init__(self) -> None:
        check_not_negative("road extraction", min_object_px=self.min_object_px, max_hole_px=self.max_hole_px,
                           simplify_px=self.simplify_px)  # fmt: skip

    def mask(self, probability: np.ndarray) -> np.ndarray:
        """The cleaned boolean road mask of a (H, W) probability map."""
        mask = remove_small_objects(probability > self.threshold, max_size=self.min_object_px)
        return remove_small_holes(mask, max_size=self.max_hole_px)

    def lines(self, probability: np.ndarray) -> list[shapely.LineString]:
        """The road centre lines of a (H, W) probability map in pixel coordinates (x = column, y = row,
        pixel centres at + 0.5)."""
        return self.mask_lines(self.mask(probability))

    def mask_lines(self, mask: np.ndarray) -> list[shapely.LineString]:
        """The road centre lines of a cleaned mask (:meth:`mask`), as :meth:`lines` gives them."""
        skeleton = skeletonize(mask).astype(np.uint16)
        graph = sknw.build_sknw(skeleton, multi=True, iso=False, ring=True, full=True)
        lines = []
        for _, _, points in graph.edges(data="pts"):
            xy = points[:, ::-1].astype(np.float64) + 0.5
            if len(xy) < 2:
                continue
            line = shapely.LineString(xy).simplify(self.simplify_px, preserve_topology=False)
            if line.length > 0:
                lines.append(line)
        return lines
