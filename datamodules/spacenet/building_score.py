"""SpaceNet's building metric, rule for rule as its official scorer (CosmiQ's ``solaris.eval``,
``Evaluator.eval_iou_spacenet_csv`` and ``challenges.spacenet_buildings_2``):

1. Geometries are the ``PolygonWKT_Pix`` column; ``POLYGON EMPTY`` is an image without buildings.
2. Ground truth polygons with area < ``min_area`` are dropped; proposals with area <= ``min_area`` are
   dropped (the scorer compares the two with different operators).
3. Proposals are taken in order of decreasing ``Confidence`` (ties: file order). An invalid proposal is
   repaired with ``buffer(0)``. Each is compared with the still-unmatched truth polygons it intersects
   (an invalid truth polygon scores IoU 0); the first of the highest IoU is its best match.
4. A proposal matches when its best IoU is **greater than** ``miniou`` (0.5); the truth polygon then
   leaves the pool. Every other proposal is a false positive, every truth polygon left with area > 0 a
   false negative.
5. Precision = TP / (TP + FP), recall = TP / (TP + FN), 0 when the denominator is 0; F1 = 2PR / (P + R),
   0 when P * R = 0. Per AOI and overall, TP, FP and FN are summed first.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import shapely

from datamodules.spacenet.wkt_csv import CsvRows, read_wkt_csv

TRUTH_COLUMNS = ("ImageId", "BuildingId", "PolygonWKT_Pix")
PROPOSAL_COLUMNS = ("ImageId", "BuildingId", "PolygonWKT_Pix", "Confidence")
MIN_AREA = {"spacenet2": 20.0, "spacenet4": 20.0, "spacenet6": 80.0}  # pixels, as each challenge scored
AOI_PATTERN = re.compile(r"AOI_\d+_[A-Za-z]+")


@dataclass
class Counts:
    """True and false positives and false negatives, and the scores they give."""

    true_pos: int = 0
    false_pos: int = 0
    false_neg: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(
            self.true_pos + other.true_pos, self.false_pos + other.false_pos, self.false_neg + other.false_neg
        )

    @property
    def precision(self) -> float:
        found = self.true_pos + self.false_pos
        return self.true_pos / found if found else 0.0

    @property
    def recall(self) -> float:
        present = self.true_pos + self.false_neg
        return self.true_pos / present if present else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p * r > 0 else 0.0

    def row(self) -> dict:
        return {
            "TruePos": self.true_pos, "FalsePos": self.false_pos, "FalseNeg": self.false_neg,
            "Precision": self.precision, "Recall": self.recall, "F1Score": self.f1,
        }  # fmt: skip


@dataclass(frozen=True)
class Proposal:
    polygon: shapely.Geometry
    confidence: float


def iou(a: shapely.Geometry, b: shapely.Geometry) -> float:
    if not (a.is_valid and b.is_valid):
        return 0.0
    return a.intersection(b).area / a.union(b).area


def score_image(
    truth: list[shapely.Geometry], proposals: list[Proposal], miniou: float = 0.5, min_area: float = 0.0
) -> Counts:
    """The counts of one image by SpaceNet's greedy matching (module docstring, rules 2-4)."""
    pool = [polygon for polygon in truth if polygon.area >= min_area]
    kept = [proposal for proposal in proposals if proposal.polygon.area > min_area]
    ordered = sorted(kept, key=lambda proposal: -proposal.confidence)  # stable: ties keep file order
    true_pos = 0
    for proposal in ordered:
        polygon = proposal.polygon if proposal.polygon.is_valid else proposal.polygon.buffer(0)
        candidates = [(position, iou(polygon, t)) for position, t in enumerate(pool) if polygon.intersects(t)]
        if not candidates:
            continue
        best, best_iou = max(candidates, key=lambda candidate: candidate[1])  # first of the highest
        if best_iou > miniou:
            true_pos += 1
            del pool[best]
    return Counts(true_pos, len(ordered) - true_pos, sum(polygon.area > 0 for polygon in pool))


def read_polygon_csv(path: str | Path, columns: tuple[str, ...], strict: bool) -> CsvRows:
    """Polygons of a SpaceNet building CSV (truth or proposal) grouped by ``ImageId``: proposals (with a
    ``Confidence`` column) as :class:`Proposal`; unusable rows as in
    :func:`~datamodules.spacenet.wkt_csv.read_wkt_csv`."""

    def item(polygon: shapely.Geometry, line: dict):
        return Proposal(polygon, float(line["Confidence"])) if "Confidence" in columns else polygon

    return read_wkt_csv(path, columns, "PolygonWKT_Pix", strict, item)


def aoi_of(image_id: str) -> str:
    """The ``AOI_N_City`` part of an image id, or the image id's prefix before its last '_' field."""
    match = AOI_PATTERN.search(image_id)
    return match.group(0) if match else image_id.rsplit("_", 1)[0]
