"""APLS equals CosmiQ's apls.py image by image, both directions and the total: its numbers
(tests/fixtures/cosmiq_apls.json) on the synthetic tiles of tests/road_cases.py, through both of its
input paths (truth and proposal GeoJSON; truth GeoJSON against a submission CSV), with travel times, with its
renaming off (our corrected rules, on tiles without the loops and repeats those rules also change), with
a truth of 500+ nodes (no inserted points) and a proposal of 1,000+ (k-d tree search)."""

import json
import os
from pathlib import Path

import pytest

from datamodules.spacenet.roads.apls import AplsSettings
from datamodules.spacenet.roads.road_score import score_roads
from tests.road_cases import write_cases

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "cosmiq_apls.json").read_text())
KINDS = ("geojson", "csv", "geojson_travel_time")
CASES = [(name, kind) for name, case in REFERENCE["cases"].items() for kind in KINDS if kind in case]
# apls.py draws a CSV's edge geometry with the utm package and places its nodes with pyproj, 0.05 mm
# apart; on the large tiles that decides whether two points land on one node (1e-4 of APLS)
TOLERANCE = {("large_truth", "csv"): 1e-3}


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("road_cases")
    return {name: write_cases(case["seeds"], root / name, **case["options"])
            for name, case in REFERENCE["cases"].items()}  # fmt: skip


def scores(folder: Path, kind: str, rules: str):
    settings = AplsSettings(rules=rules, weight="travel_time" if kind.endswith("travel_time") else "length")
    if kind == "csv":
        return score_roads(folder / "truth", folder / "proposal.csv", folder / "images", True, settings)
    return score_roads(folder / "truth", folder / "proposal", None, True, settings, "inferred_speed_mps")


@pytest.mark.parametrize(("case", "kind"), CASES)
def test_apls_equals_cosmiq_apls_py(tiles, case, kind):
    reference = REFERENCE["cases"][case]
    result = scores(tiles[case], kind, reference["rules"])
    assert set(result.images) == set(reference[kind])
    for image, expected in reference[kind].items():
        got = result.images[image]
        values = (got.total, got.truth_onto_proposal, got.proposal_onto_truth)
        assert values == pytest.approx(expected, abs=TOLERANCE.get((case, kind), 1e-6)), image


@pytest.mark.skipif("APLS_SAMPLE_DATA" not in os.environ,
                    reason="set APLS_SAMPLE_DATA to the apls/data folder of CosmiQ/apls")  # fmt: skip
def test_apls_equals_cosmiq_apls_py_on_its_sample_data(tmp_path):
    data = Path(os.environ["APLS_SAMPLE_DATA"])
    images = tmp_path / "images"  # named by tile id, as the truth is
    images.mkdir()
    (images / "AOI_2_Vegas_img0.tif").symlink_to(data / "images" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif")
    pairs = data / "gt_json_prop_json" / "AOI_2_Vegas_Train"
    wkt = data / "gt_json_prop_wkt"
    results = {
        "gt_json_prop_json": score_roads(pairs / "spacenetroads", pairs / "osm", None, True, AplsSettings()),
        "gt_json_prop_wkt": score_roads(
            wkt / "ground_truth_randomized",
            wkt / "proposal" / "sn3_sample_submission_albu.csv",
            images,
            True,
            AplsSettings(),
        ),  # fmt: skip
    }
    for path, expected in REFERENCE["sample_data"].items():
        for image, values in expected.items():
            got = results[path].images[image]
            assert (got.total, got.truth_onto_proposal, got.proposal_onto_truth) == pytest.approx(
                values, abs=1e-6
            )
