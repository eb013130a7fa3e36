"""The SpaceNet building scorer and its command, rule by rule on hand-built cases (answers derived in
the comments), matching CosmiQ's solaris.eval."""

import csv

import numpy as np
import pytest
import shapely

from datamodules.spacenet.building_score import Counts, Proposal, score_image
from lightning_app.evaluate import main
from tests.spacenet_fixtures import tile_transform, write_tile

A = shapely.box(0, 0, 10, 10)  # area 100
B = shapely.box(10, 0, 20, 10)  # A's neighbour


def proposals(*polygons_and_confidences):
    return [Proposal(polygon, confidence) for polygon, confidence in polygons_and_confidences]


def counts(result: Counts) -> tuple[int, int, int]:
    return result.true_pos, result.false_pos, result.false_neg


def test_a_duplicate_proposal_is_a_false_positive():
    result = score_image([A], proposals((A, 1.0), (A, 1.0)))
    assert counts(result) == (1, 1, 0)
    assert (result.precision, result.recall) == (0.5, 1.0) and result.f1 == pytest.approx(2 / 3)


def test_a_proposal_over_two_truths_matches_the_one_of_highest_iou():
    # IoU with A: 80 / 140 = 0.571; with B: 40 / 180 = 0.222 -> A matched, B missed
    assert counts(score_image([A, B], proposals((shapely.box(2, 0, 14, 10), 1.0)))) == (1, 0, 1)


@pytest.mark.parametrize(("height", "expected"), [(5.0, (0, 1, 1)), (5.1, (1, 0, 0))])
def test_iou_must_exceed_the_threshold(height, expected):
    # box(0, 0, 10, 5) has IoU exactly 50 / 100 = 0.5 with A: not a match (solaris compares with >)
    assert counts(score_image([A], proposals((shapely.box(0, 0, 10, height), 1.0)))) == expected


def test_minimum_area_keeps_truth_at_the_limit_but_drops_proposals_at_it():
    small = shapely.box(0, 0, 4, 5)  # area 20
    tiny = shapely.box(30, 30, 34, 34)  # area 16
    # truth: area >= 20 kept, so `small` is a false negative and `tiny` is ignored;
    # proposals: area > 20 kept, so the perfect proposal of area 20 is ignored
    assert counts(score_image([small, tiny], proposals((small, 1.0)), min_area=20)) == (0, 0, 1)
    assert counts(score_image([small, tiny], proposals((small, 1.0)), min_area=0)) == (1, 0, 1)


def test_proposals_are_matched_in_order_of_confidence_and_ties_go_to_the_first_truth():
    a, b = shapely.box(0, 0, 10, 10), shapely.box(0, 2, 10, 12)  # two overlapping truths
    high = shapely.box(0, 1, 10, 11)  # IoU 90/110 with both: the tie goes to a, the first
    low = shapely.box(0, -3, 10, 8)  # IoU 80/130 = 0.615 with a, 60/150 = 0.4 with b
    # by confidence: high takes a, low is left with b (0.4): 1 TP, 1 FP, b missed.
    # (In file order low would take a and high b: 2 TP.)
    assert counts(score_image([a, b], proposals((low, 0.1), (high, 0.9)))) == (1, 1, 1)


def test_images_without_buildings_on_either_side():
    empty = shapely.from_wkt("POLYGON EMPTY")
    assert counts(score_image([empty], [])) == (0, 0, 0)
    assert counts(score_image([empty], proposals((A, 1.0)))) == (0, 1, 0)
    assert counts(score_image([A], proposals((empty, 1.0)))) == (0, 0, 1)
    assert Counts().f1 == 0.0 and Counts(0, 0, 3).recall == 0.0


def test_an_invalid_proposal_is_repaired_with_buffer_0_and_an_invalid_truth_scores_zero():
    hourglass = shapely.Polygon([(0, 0), (20, 20), (20, 0), (0, 4)])  # crossing edges: invalid
    repaired = hourglass.buffer(0)  # what the scorer compares, as solaris does
    assert not hourglass.is_valid and repaired.is_valid
    assert counts(score_image([repaired], proposals((hourglass, 1.0)))) == (1, 0, 0)
    assert counts(score_image([hourglass], proposals((repaired, 1.0)))) == (0, 1, 1)
    # a symmetric bow-tie has area 0 (its lobes cancel), so the area filter drops it, as in solaris
    bowtie = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    assert counts(score_image([shapely.make_valid(bowtie)], proposals((bowtie, 1.0)))) == (0, 0, 1)


def write_csv(path, header, rows):
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


TRUTH_HEADER = ("ImageId", "BuildingId", "PolygonWKT_Pix", "PolygonWKT_Geo")
PROPOSAL_HEADER = ("ImageId", "BuildingId", "PolygonWKT_Pix", "Confidence")


def test_command_scores_per_image_per_aoi_and_overall(tmp_path, capsys):
    truth = write_csv(tmp_path / "truth.csv", TRUTH_HEADER, [
        ("AOI_2_Vegas_img1", 1, A.wkt, ""), ("AOI_2_Vegas_img1", 2, B.wkt, ""),
        ("AOI_2_Vegas_img2", -1, "POLYGON EMPTY", "POLYGON EMPTY"),
        ("AOI_3_Paris_img1", 1, A.wkt, ""),
    ])  # fmt: skip
    proposal = write_csv(tmp_path / "proposal.csv", PROPOSAL_HEADER, [
        ("AOI_2_Vegas_img1", 1, A.wkt, 0.9), ("AOI_2_Vegas_img2", 1, B.wkt, 0.8),
        ("AOI_3_Paris_img1", 1, A.wkt, 0.7),
    ])  # fmt: skip
    main(
        [
            "spacenet-buildings",
            "--truth",
            str(truth),
            "--proposal",
            str(proposal),
            "--out",
            str(tmp_path / "r.csv"),
        ]
    )
    with (tmp_path / "r.csv").open() as file:
        rows = {(row["Level"], row["Name"]): row for row in csv.DictReader(file)}
    assert [rows[("image", "AOI_2_Vegas_img1")][k] for k in ("TruePos", "FalsePos", "FalseNeg")] == [
        "1",
        "0",
        "1",
    ]
    assert [rows[("image", "AOI_2_Vegas_img2")][k] for k in ("TruePos", "FalsePos", "FalseNeg")] == [
        "0",
        "1",
        "0",
    ]
    vegas = rows[("aoi", "AOI_2_Vegas")]  # TP 1, FP 1, FN 1 summed before the scores
    assert float(vegas["Precision"]) == 0.5 and float(vegas["F1Score"]) == 0.5
    overall = rows[("overall", "all")]  # TP 2, FP 1, FN 1
    assert float(overall["F1Score"]) == pytest.approx(2 / 3)
    assert "AOI_3_Paris" in capsys.readouterr().out


def test_bad_rows_are_skipped_with_their_row_number_or_errors_when_strict(tmp_path, capsys):
    truth = write_csv(tmp_path / "truth.csv", TRUTH_HEADER, [("AOI_2_Vegas_img1", 1, A.wkt, "")])
    proposal = write_csv(tmp_path / "proposal.csv", PROPOSAL_HEADER, [
        ("AOI_2_Vegas_img1", 1, A.wkt, 0.9), ("AOI_2_Vegas_img1", 2, "POLYGON ((0 0, 1 1", 0.5),
        ("AOI_2_Vegas_img9", 1, A.wkt, 0.5),
    ])  # fmt: skip
    main(["spacenet-buildings", "--truth", str(truth), "--proposal", str(proposal)])
    err = capsys.readouterr().err
    assert "skipped 2 rows" in err and "proposal.csv row 3: cannot read 'POLYGON ((0 0, 1 1'" in err
    assert "proposal.csv row 4: image id 'AOI_2_Vegas_img9' is not in the truth" in err
    with pytest.raises(SystemExit, match="error: .*proposal.csv row 3: cannot read"):
        main(["spacenet-buildings", "--truth", str(truth), "--proposal", str(proposal), "--strict"])
    write_csv(proposal, ("ImageId", "PolygonWKT_Pix"), [("AOI_2_Vegas_img1", A.wkt)])
    with pytest.raises(SystemExit, match="missing column.*BuildingId, Confidence"):
        main(["spacenet-buildings", "--truth", str(truth), "--proposal", str(proposal)])


def test_proposals_from_predicted_masks(tmp_path, capsys):
    probability = np.zeros((1, 64, 64), np.float32)
    probability[0, 10:20, 30:40] = 0.8
    write_tile(tmp_path / "masks" / "AOI_2_Vegas_img1.tif", probability, tile_transform(), nodata=None)
    empty = np.zeros((1, 64, 64), np.float32)
    write_tile(tmp_path / "masks" / "AOI_2_Vegas_img2.tif", empty, tile_transform(), nodata=None)
    truth = write_csv(tmp_path / "truth.csv", TRUTH_HEADER, [
        ("AOI_2_Vegas_img1", 1, shapely.box(30, 10, 40, 20).wkt, ""),
        ("AOI_2_Vegas_img2", -1, "POLYGON EMPTY", ""),
    ])  # fmt: skip
    proposal = tmp_path / "proposal.csv"
    main(["spacenet-buildings", "--from-masks", str(tmp_path / "masks"), "--proposal", str(proposal),
          "--truth", str(truth), "--out", str(tmp_path / "r.csv")])  # fmt: skip
    with proposal.open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["ImageId"], r["PolygonWKT_Pix"] == "POLYGON EMPTY") for r in rows] == [
        ("AOI_2_Vegas_img1", False),
        ("AOI_2_Vegas_img2", True),
    ]
    assert shapely.from_wkt(rows[0]["PolygonWKT_Pix"]).equals(shapely.box(30, 10, 40, 20))
    assert float(rows[0]["Confidence"]) == pytest.approx(0.8)
    assert "F1 1.0000" in capsys.readouterr().out.splitlines()[-1]
