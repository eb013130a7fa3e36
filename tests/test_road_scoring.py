"""``python -m lightning_app.evaluate spacenet-roads``: SpaceNet 3 truth GeoJSON against a submission CSV
or a folder of proposal GeoJSON, per image, per AOI and overall, with bad rows reported."""

import csv
import json
import shutil

import numpy as np
import pytest
from rasterio.warp import transform

from lightning_app.evaluate import main
from tests.road_cases import TRANSFORM, Feature, RoadCase, csv_rows, write_case
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


def test_a_row_without_wkt_is_skipped_with_its_row_number_or_refused_when_strict(tmp_path, capsys):
    aoi = make_spacenet3(tmp_path, tiles=1)
    proposal = tmp_path / "proposal.csv"
    proposal.write_text(f'ImageId,WKT_Pix\nAOI_5_Khartoum_img0,"{ROAD_PX}"\nAOI_5_Khartoum_img0\n')
    main(args(aoi, proposal, "--images", str(aoi / "PS-MS")))
    captured = capsys.readouterr()
    assert "proposal.csv row 3: no WKT_Pix value" in captured.err and "APLS 1.0000" in captured.out
    with pytest.raises(SystemExit, match="error: .*proposal.csv row 3: no WKT_Pix value"):
        main(args(aoi, proposal, "--images", str(aoi / "PS-MS"), "--strict"))


def test_text_output_has_a_line_per_image_and_counts_empty_proposals(tmp_path, capsys):
    aoi = make_spacenet3(tmp_path, tiles=2)
    rows = [("AOI_5_Khartoum_img0", ROAD_PX), ("AOI_5_Khartoum_img1", "LINESTRING EMPTY")]
    proposal = write_csv(tmp_path / "proposal.csv", rows)
    main(args(aoi, proposal, "--images", str(aoi / "PS-MS")))
    lines = capsys.readouterr().out.splitlines()
    assert "1 with an empty proposal, scored 0" in lines[0] and "paths from 0.001" in lines[0]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["image", "AOI_5_Khartoum_img0", "APLS"], ["image", "AOI_5_Khartoum_img1", "APLS"],
        ["aoi", "AOI_5_Khartoum", "APLS"], ["overall", "all", "APLS"]]  # fmt: skip
    assert lines[2].split()[3] == "0.0000" and lines[3].split()[3] == "0.5000"
    main(args(aoi, proposal, "--images", str(aoi / "PS-MS"), "--json"))
    assert json.loads(capsys.readouterr().out)["empty_proposals"] == ["AOI_5_Khartoum_img1"]


def haversine(a, b) -> float:
    """osmnx's great-circle distance of two (longitude, latitude) points, rounded to the millimetre."""
    (lon1, lat1), (lon2, lat2) = (np.radians(a), np.radians(b))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return round(2 * 6_371_009 * np.arcsin(np.sqrt(h)), 3)


def test_the_same_road_as_geojson_and_as_pixel_lines(tmp_path, capsys):
    """A 30 m road (no inserted points) given as truth GeoJSON and as a proposal in both forms. apls.py
    measures GeoJSON edges on the sphere (H, haversine) and pixel edges in UTM (P): the GeoJSON proposal
    scores 1; the CSV scores 1 - |H - P| / H truth onto proposal and 1 - |P - H| / P back."""
    case = RoadCase("AOI_2_Vegas_img1", [Feature([[(100.0, 200.0), (224.0, 200.0)]])],
                    [Feature([[(100.0, 200.0), (224.0, 200.0)]])])  # fmt: skip
    write_case(case, tmp_path)
    ends = [TRANSFORM @ vertex for vertex in case.truth[0].parts[0]]
    xs, ys = transform("EPSG:4326", "EPSG:32611", *zip(*ends, strict=True))
    great_circle, planar = haversine(*ends), float(np.hypot(np.diff(xs), np.diff(ys))[0])
    assert 29 < great_circle < 31 and abs(great_circle - planar) > 0.01
    truth = ["spacenet-roads", "--truth", str(tmp_path / "truth"), "--json"]
    main([*truth, "--proposal", str(tmp_path / "proposal")])
    (image, *_) = json.loads(capsys.readouterr().out)["results"]
    assert image["APLS"] == pytest.approx(1.0, abs=1e-12)
    main([*truth, "--proposal", str(tmp_path / "proposal.csv"), "--images", str(tmp_path / "images")])
    (image, *_) = json.loads(capsys.readouterr().out)["results"]
    assert image["APLS_gt_onto_prop"] == pytest.approx(
        1 - abs(great_circle - planar) / great_circle, abs=1e-9
    )
    assert image["APLS_prop_onto_gt"] == pytest.approx(1 - abs(planar - great_circle) / planar, abs=1e-9)


def test_travel_times_from_speed_properties_and_a_csv_column(tmp_path, capsys):
    """A 120 m road at 10 m/s in the truth; the proposal drives it at 12.5 m/s (GeoJSON property, or a
    CSV travel_time_s of its UTM length / 12.5): every travel time is off by 1 - 10/12.5 = 0.2 of the
    truth's and by 0.25 of the proposal's (pieces of split edges keep the road's one speed)."""
    road = [[(100.0, 200.0), (600.0, 200.0)]]
    case = RoadCase("AOI_2_Vegas_img1", [Feature(road, {"speed_m/s": 10.0})],
                    [Feature(road, {"speed_m/s": 12.5})])  # fmt: skip
    write_case(case, tmp_path)
    ends = [TRANSFORM @ vertex for vertex in road[0]]
    xs, ys = transform("EPSG:4326", "EPSG:32611", *zip(*ends, strict=True))
    seconds = float(np.hypot(np.diff(xs), np.diff(ys))[0]) / 12.5
    (tmp_path / "timed.csv").write_text(f"ImageId,WKT_Pix,travel_time_s\n{csv_rows(case)[0][0]},"
                                        f'"{csv_rows(case)[0][1]}",{seconds!r}\n')  # fmt: skip
    options = [
        "--truth",
        str(tmp_path / "truth"),
        "--weight",
        "travel_time",
        "--speed-key",
        "speed_m/s",
        "--json",
    ]
    for proposal in (
        [str(tmp_path / "proposal")],
        [str(tmp_path / "timed.csv"), "--images", str(tmp_path / "images")],
    ):
        main(["spacenet-roads", *options, "--proposal", *proposal])
        (image, *_) = json.loads(capsys.readouterr().out)["results"]
        assert (image["APLS_gt_onto_prop"], image["APLS_prop_onto_gt"]) == pytest.approx(
            (0.8, 0.75), abs=1e-9
        )
    with pytest.raises(
        SystemExit, match="error: .*img1.geojson: a line has no usable 'inferred_speed_mps' property"
    ):
        main(
            [
                "spacenet-roads",
                *options[:2],
                "--weight",
                "travel_time",
                "--proposal",
                str(tmp_path / "proposal"),
            ]
        )
    with pytest.raises(SystemExit, match="error: .*proposal.csv: missing column\\(s\\) travel_time_s"):
        main(["spacenet-roads", *options, "--proposal", str(tmp_path / "proposal.csv"), "--images",
              str(tmp_path / "images")])  # fmt: skip
