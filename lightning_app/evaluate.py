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

    python -m lightning_app.evaluate spacenet-roads --truth TRUTH_GEOJSON_DIR --proposal PROPOSAL_DIR_OR_CSV
        [--images TILES_DIR] [--out RESULTS.csv] [--json] [--strict] [--weight length|travel_time]
        [--speed-key inferred_speed_mps] [--rules cosmiq|corrected]

``spacenet-roads`` scores SpaceNet 3 road proposals with APLS as CosmiQ's apls.py computes it (its graph
building, snapping and defaults; see :mod:`datamodules.spacenet.roads.apls`): the truth is a folder of
GeoJSON label files, the proposal a folder of GeoJSON files (one per tile, any CRS, as the prediction
writer's ``graphs/``) or a submission CSV ``ImageId,WKT_Pix`` (``LINESTRING EMPTY`` for a tile without
roads; ``--images``, the tiles' GeoTIFFs, places its pixels). Files pair by tile id
(``AOI_2_Vegas_img12``). It prints and writes APLS, truth onto proposal and proposal onto truth per image,
and their means per AOI and overall; a tile without a proposal, or with an empty one, scores 0 (apls.py
leaves a tile whose CSV rows are empty out of its mean); a tile without truth roads is not scored. Bad
rows as for buildings. ``--weight travel_time`` compares travel times (APLS_time, SpaceNet 5): GeoJSON
lines need a speed in m/s (``--speed-key``), CSV rows a ``travel_time_s`` column. ``--rules corrected``
fixes what look like bugs of apls.py (README, "Roads on SpaceNet 3").
"""

import argparse
import csv
import json
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
from datamodules.spacenet.roads import AplsSettings
from datamodules.spacenet.roads.apls import RULES, WEIGHTS
from datamodules.spacenet.roads.road_score import score_roads
from datamodules.spacenet.wkt_csv import drop_unknown_images
from lightning_app.errors import UserInputError, describe, run_subcommand

RESULT_COLUMNS = ("Level", "Name", "TruePos", "FalsePos", "FalseNeg", "Precision", "Recall", "F1Score")
ROAD_RESULT_COLUMNS = ("Level", "Name", "APLS", "APLS_gt_onto_prop", "APLS_prop_onto_gt")


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
    _print_skipped(skipped)
    if args.out:
        _write_csv(args.out, RESULT_COLUMNS, rows)


def _print_skipped(skipped: list[str]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} rows (--strict makes them errors):", file=sys.stderr)
        for problem in skipped[:20]:
            print(f"  {problem}", file=sys.stderr)


def _write_csv(path: str, columns: tuple[str, ...], rows: list[dict]) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def road_result_rows(images: dict) -> list[dict]:
    """Per image, per AOI (the mean of its images) and overall (the mean of all images)."""

    def row(level: str, name: str, scores: list) -> dict:
        columns = ("APLS", "APLS_gt_onto_prop", "APLS_prop_onto_gt")
        values = [[s.total for s in scores], [s.truth_onto_proposal for s in scores],
                  [s.proposal_onto_truth for s in scores]]  # fmt: skip
        return {
            "Level": level,
            "Name": name,
            **{c: float(np.mean(v)) for c, v in zip(columns, values, strict=True)},
        }

    aois: dict[str, list] = {}
    for image_id, score in images.items():
        aois.setdefault(aoi_of(image_id), []).append(score)
    rows = [row("image", name, [score]) for name, score in images.items()]
    rows += [row("aoi", name, scores) for name, scores in sorted(aois.items())]
    return [*rows, row("overall", "all", list(images.values()))] if images else rows


def spacenet_roads(args: argparse.Namespace) -> None:
    settings = AplsSettings(args.linestring_delta, args.max_snap_dist, args.min_path_length, args.weight,
                            args.rules)  # fmt: skip
    images = Path(args.images) if args.images else None
    speed_key = args.speed_key if args.weight == "travel_time" else None
    scores = score_roads(Path(args.truth), Path(args.proposal), images, args.strict, settings, speed_key)
    if not scores.images:
        raise UserInputError(f"--truth {args.truth}: no tile has a truth road, so nothing can be scored")
    rows = road_result_rows(scores.images)
    if args.json:
        print(json.dumps({"results": rows, "without_truth": scores.without_truth,
                          "empty_proposals": scores.empty_proposals, "skipped": scores.skipped}))  # fmt: skip
    else:
        print(f"SpaceNet roads APLS ({settings.weight}, {settings.rules} rules): {len(scores.images)} images "
              f"({len(scores.without_truth)} without truth roads, not scored; {len(scores.empty_proposals)} "
              f"with an empty proposal, scored 0); snap {settings.max_snap_dist:g} m, control points every "
              f"{settings.linestring_delta:g} m, paths from {settings.min_path_length:g}")  # fmt: skip
        for row in rows:
            print(
                f"  {row['Level']:<7} {row['Name']:<24} APLS {row['APLS']:.4f}  truth onto proposal "
                f"{row['APLS_gt_onto_prop']:.4f}  proposal onto truth {row['APLS_prop_onto_gt']:.4f}"
            )
    _print_skipped(scores.skipped)
    if args.out:
        _write_csv(args.out, ROAD_RESULT_COLUMNS, rows)


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
    roads = commands.add_parser("spacenet-roads", help="SpaceNet 3 road APLS of a proposal folder or CSV")
    roads.add_argument(
        "--truth", required=True, help="folder of truth GeoJSON files (SpaceNet 3 geojson_roads)"
    )
    roads.add_argument("--proposal", required=True,
                       help="folder of proposal GeoJSON files, or a CSV ImageId,WKT_Pix")  # fmt: skip
    roads.add_argument(
        "--images", help="folder of the tiles' GeoTIFFs (needed for a CSV's pixel coordinates)"
    )
    roads.add_argument("--out", help="write the per-image, per-AOI and overall results to this CSV")
    roads.add_argument("--json", action="store_true", help="print the results as JSON")
    roads.add_argument("--strict", action="store_true", help="unusable rows are errors, not skipped")
    defaults = AplsSettings()
    roads.add_argument("--linestring-delta", type=float, default=defaults.linestring_delta,
                       help="control point spacing, metres")  # fmt: skip
    roads.add_argument("--max-snap-dist", type=float, default=defaults.max_snap_dist,
                       help="snapping distance, metres")  # fmt: skip
    roads.add_argument("--min-path-length", type=float, default=defaults.min_path_length,
                       help="shorter paths are not compared (metres; seconds for travel times)")  # fmt: skip
    roads.add_argument("--weight", choices=WEIGHTS, default=defaults.weight,
                       help="compare path lengths or travel times (APLS_time, SpaceNet 5)")  # fmt: skip
    roads.add_argument("--speed-key", default="inferred_speed_mps",
                       help="with --weight travel_time: the GeoJSON line speed property, m/s")  # fmt: skip
    roads.add_argument("--rules", choices=RULES, default=defaults.rules,
                       help="cosmiq: apls.py's rules and quirks; corrected: its bugs fixed")  # fmt: skip
    roads.set_defaults(run=spacenet_roads)
    run_subcommand(parser, argv)


if __name__ == "__main__":
    main()
