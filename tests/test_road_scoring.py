"""``python -m lightning_app.evaluate spacenet-roads``: SpaceNet 3 truth GeoJSON against a submission CSV
or a folder of proposal GeoJSON, per image, per AOI and overall, with bad rows reported."""

import csv
import json
import shutil

import pytest

from lightning_app.evaluate import main
from tests.spacenet_fixtures import make_spacenet3

ROAD_PX = "LINESTRING (-10 32, 74 32)"  # each tile's truth road (row 32, 5 m beyond both sides) in pixels
HEADER = ("ImageId", "WKT_Pix")


def write_csv(path, rows):
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def args(aoi, proposal, *extra):
    return ["spacenet-roads", "--truth", str(aoi / "geojson_roads"), "--proposal", str(proposal), *extra]


def test_submission_csv_scores_per_image_aoi_and_overall(tmp_path, capsys):
    """img0: the truth road (1); img1: LINESTRING EMPTY (0); img2: 5 m off, beyond the 4 m snap (0);
    img3: no row (0). The AOI and overall are the mean, 0.25."""
    aoi = make_spacenet3(tmp_path)
    proposal = write_csv(tmp_path / "proposal.csv", [
        ("AOI_5_Khartoum_img0", ROAD_PX), ("AOI_5_Khartoum_img1", "LINESTRING EMPTY"),
        ("AOI_5_Khartoum_img2", "LINESTRING (-10 42, 74 42)"),
    ])  # fmt: skip
    main(args(aoi, proposal, "--images", str(aoi / "PS-MS"), "--out", str(tmp_path / "r.csv")))
    with (tmp_path / "r.csv").open() as file:
        rows = {(row["Level"], row["Name"]): row for row in csv.DictReader(file)}
    apls = {name: float(row["APLS"]) for (level, name), row in rows.items() if level == "image"}
    assert apls["AOI_5_Khartoum_img0"] == pytest.approx(1.0, abs=1e-6)
    assert [apls[f"AOI_5_Khartoum_img{i}"] for i in (1, 2, 3)] == [0.0, 0.0, 0.0]
    assert float(rows[("aoi", "AOI_5_Khartoum")]["APLS"]) == pytest.approx(0.25, abs=1e-6)
    assert float(rows[("overall", "all")]["APLS_gt_onto_prop"]) == pytest.approx(0.25, abs=1e-6)
    assert "AOI_5_Khartoum" in capsys.readouterr().out


def test_proposal_geojson_folder_and_json_output(tmp_path, capsys):
    aoi = make_spacenet3(tmp_path)
    proposals = tmp_path / "graphs"
    proposals.mkdir()
    for tile in (0, 1):  # the truth itself as the proposal of two tiles, in any file name with the tile id
        source = aoi / "geojson_roads" / f"SN3_roads_train_AOI_5_Khartoum_geojson_roads_img{tile}.geojson"
        shutil.copy(source, proposals / f"AOI_5_Khartoum_img{tile}.geojson")
    main(args(aoi, proposals, "--json"))
    result = json.loads(capsys.readouterr().out)
    by_name = {row["Name"]: row for row in result["results"]}
    assert by_name["AOI_5_Khartoum_img0"]["APLS"] == pytest.approx(1.0, abs=1e-6)
    assert by_name["AOI_5_Khartoum_img2"]["APLS"] == 0.0
    assert by_name["all"]["APLS"] == pytest.approx(0.5, abs=1e-6)


def test_bad_rows_are_skipped_with_their_row_number_or_errors_when_strict(tmp_path, capsys):
    aoi = make_spacenet3(tmp_path, tiles=1)
    proposal = write_csv(tmp_path / "proposal.csv", [
        ("AOI_5_Khartoum_img0", ROAD_PX), ("AOI_5_Khartoum_img0", "LINESTRING (0 0, 1"),
        ("AOI_5_Khartoum_img0", "POLYGON ((0 0, 1 0, 1 1, 0 0))"), ("AOI_5_Khartoum_img7", ROAD_PX),
    ])  # fmt: skip
    main(args(aoi, proposal, "--images", str(aoi / "PS-MS")))
    captured = capsys.readouterr()
    assert "skipped 3 rows" in captured.err
    assert "proposal.csv row 3: cannot read 'LINESTRING (0 0, 1'" in captured.err
    assert "proposal.csv row 4: a Polygon, expected LineString or MultiLineString" in captured.err
    assert "proposal.csv row 5: image id 'AOI_5_Khartoum_img7' is not in the truth" in captured.err
    assert "APLS 1.0000" in captured.out  # the good row still scores
    with pytest.raises(SystemExit, match="error: .*proposal.csv row 3: cannot read"):
        main(args(aoi, proposal, "--images", str(aoi / "PS-MS"), "--strict"))


def test_pixel_coordinates_need_the_tiles(tmp_path):
    aoi = make_spacenet3(tmp_path, tiles=1)
    proposal = write_csv(tmp_path / "proposal.csv", [("AOI_5_Khartoum_img0", ROAD_PX)])
    with pytest.raises(SystemExit, match="holds pixel coordinates: give --images"):
        main(args(aoi, proposal))
    with pytest.raises(SystemExit, match="--truth .*missing is not a folder"):
        main(["spacenet-roads", "--truth", str(tmp_path / "missing"), "--proposal", str(proposal)])
