"""Evaluation commands.

    python -m lightning_app.evaluate spacenet-buildings --truth TRUTH.csv --proposal PROPOSAL.csv
        [--out RESULTS.csv] [--challenge spacenet2|spacenet4|spacenet6] [--min-area PX] [--miniou 0.5]
        [--strict]
    python -m lightning_app.evaluate spacenet-buildings --from-masks MASKS_DIR --proposal PROPOSAL.csv
        [--threshold 0.5] [--truth TRUTH.csv ...]

``spacenet-buildings`` scores a SpaceNet building proposal CSV (``ImageId,BuildingId,PolygonWKT_Pix,
Confidence``) against the truth CSV (``ImageId,BuildingId,PolygonWKT_Pix,...``) with the rules of
SpaceNet's official scorer (see :mod:`datamodules.spacenet.building_score`), and prints and writes
TruePos, FalsePos, FalseNeg, Precision, Recall and F1Score per image, per AOI and overall. Rows it cannot
use (malformed WKT, an image id the truth does not have) are skipped and reported with their row
numbers; ``--strict`` makes them errors. ``--from-masks`` first turns a folder of predicted GeoTIFF masks
(probabilities or classes; the file stem is the ImageId) into the proposal CSV.
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import rasterio

from datamodules.spacenet.building_score import (
    MIN_AREA,
    PROPOSAL_COLUMNS,
    TRUTH_COLUMNS,
    Counts,
    aoi_of,
    read_polygon_csv,
    score_image,
)
from datamodules.spacenet.geo_output import proposal_rows, scored_polygons, write_proposal_csv
from datamodules.spacenet.wkt_csv import drop_unknown_images
from lightning_app.errors import UserInputError, describe, run_subcommand

RESULT_COLUMNS = ("Level", "Name", "TruePos", "FalsePos", "FalseNeg", "Precision", "Recall", "F1Score")


def proposals_from_masks(folder: Path, out: Path, threshold: float) -> int:
    """Write the proposal CSV of every ``*.tif`` mask in ``folder``: polygons of pixels above
    ``threshold``, confidence = their mean value (1 for class masks); ``POLYGON EMPTY`` for a mask with
    none. Returns the number of polygons."""
    masks = sorted(folder.glob("*.tif"))
    if not masks:
        raise UserInputError(f"--from-masks {folder}: no .tif masks there")
    rows = []
    for path in masks:
        try:
            with rasterio.open(path) as source:
                values = source.read(1).astype(np.float32)
        except rasterio.errors.RasterioError as error:
            raise UserInputError(f"cannot read mask {path}: {describe(error)}") from error
        rows += proposal_rows(path.stem, scored_polygons(values, threshold))
    write_proposal_csv(out, rows)
    return sum(row[1] >= 0 for row in rows)


def score(truth_csv: Path, proposal_csv: Path, miniou: float, min_area: float, strict: bool):
    """Per-image counts, and the reports of skipped rows."""
    truth = read_polygon_csv(truth_csv, TRUTH_COLUMNS, strict)
    proposals = read_polygon_csv(proposal_csv, PROPOSAL_COLUMNS, strict)
    skipped = truth.skipped + proposals.skipped
    skipped += drop_unknown_images(proposals, set(truth.items), proposal_csv, strict)
    images = {
        image_id: score_image(polygons, proposals.items.get(image_id, []), miniou, min_area)
        for image_id, polygons in sorted(truth.items.items())
    }
    return images, skipped


def result_rows(images: dict[str, Counts]) -> list[dict]:
    aois: dict[str, Counts] = {}
    for image_id, counts in images.items():
        aois[aoi_of(image_id)] = aois.get(aoi_of(image_id), Counts()) + counts
    overall = sum(images.values(), Counts())
    rows = [{"Level": "image", "Name": name, **counts.row()} for name, counts in images.items()]
    rows += [{"Level": "aoi", "Name": name, **counts.row()} for name, counts in sorted(aois.items())]
    return [*rows, {"Level": "overall", "Name": "all", **overall.row()}]


def spacenet_buildings(args: argparse.Namespace) -> None:
    if args.from_masks:
        count = proposals_from_masks(Path(args.from_masks), Path(args.proposal), args.threshold)
        print(f"wrote {count} polygons to {args.proposal}")
        if not args.truth:
            return
    elif not args.truth:
        raise UserInputError("give --truth TRUTH.csv (or --from-masks to only write the proposal CSV)")
    min_area = MIN_AREA[args.challenge] if args.min_area is None else args.min_area
    images, skipped = score(Path(args.truth), Path(args.proposal), args.miniou, min_area, args.strict)
    rows = result_rows(images)
    print(f"SpaceNet buildings: IoU > {args.miniou}, min area {min_area:g} px, {len(images)} images")
    for row in rows:
        if row["Level"] != "image":
            print(f"  {row['Name']:<24} TP {row['TruePos']:>7} FP {row['FalsePos']:>7} "
                  f"FN {row['FalseNeg']:>7} P {row['Precision']:.4f} R {row['Recall']:.4f} "
                  f"F1 {row['F1Score']:.4f}")  # fmt: skip
    if skipped:
        print(f"skipped {len(skipped)} rows (--strict makes them errors):", file=sys.stderr)
        for problem in skipped[:20]:
            print(f"  {problem}", file=sys.stderr)
    if args.out:
        with open(args.out, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=RESULT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    buildings = commands.add_parser("spacenet-buildings", help="SpaceNet building F1 of a proposal CSV")
    buildings.add_argument("--truth", help="truth CSV: ImageId,BuildingId,PolygonWKT_Pix[,PolygonWKT_Geo]")
    buildings.add_argument(
        "--proposal", required=True, help="proposal CSV: ImageId,BuildingId,PolygonWKT_Pix,Confidence"
    )
    buildings.add_argument("--out", help="write the per-image, per-AOI and overall results to this CSV")
    buildings.add_argument("--challenge", choices=sorted(MIN_AREA), default="spacenet2",
                           help="min polygon area: 20 px (SpaceNet 2, 4), 80 px (SpaceNet 6)")  # fmt: skip
    buildings.add_argument("--min-area", type=float, default=None, help="minimum polygon area in pixels")
    buildings.add_argument("--miniou", type=float, default=0.5, help="a match needs IoU above this")
    buildings.add_argument("--strict", action="store_true", help="unusable rows are errors, not skipped")
    buildings.add_argument("--from-masks", help="folder of predicted GeoTIFF masks to turn into --proposal")
    buildings.add_argument("--threshold", type=float, default=0.5, help="mask value above which is building")
    buildings.set_defaults(run=spacenet_buildings)
    run_subcommand(parser, argv)


if __name__ == "__main__":
    main()
