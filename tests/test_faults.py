"""Faults a run meets: a killed process, a checkpoint of another run, a store cut short, flipped or
unwritable, a damaged checkpoint. Each ends in the right result or one line naming the file."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from lightning.pytorch.utilities.data import _is_dataloader_shuffled
from PIL import Image

from callbacks.lca import LossChangeAllocation
from callbacks.lca.integrity import DamagedStore, state_crc
from callbacks.lca.store import LCARun, LCAStore
from datamodules.image_files import output_names, read_image
from datamodules.mnist import MNISTDataModule
from datamodules.spacenet.datamodule import SpaceNetDataModule
from lightning_app import evaluate, report
from lightning_app.cli import cli_main
from lightning_app.cli import main as train_main
from lightning_app.errors import UserInputError
from models.segmentation_metrics import SoftIoU
from tests.spacenet_fixtures import make_spacenet6, pixel_box, tile_transform, write_geojson

ROOT = Path(__file__).parents[1]
LCA_CONFIG = str(ROOT / "configs" / "mnist_fc_lca.yaml")
SHORT = [
    "--data.init_args.source=sample",
    "--trainer.limit_train_batches=10",
    "--trainer.limit_val_batches=0",
    "--trainer.callbacks.init_args.eval_size=200",
    "--trainer.callbacks.init_args.flush_every=5",
    "--trainer.callbacks.init_args.report=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]
EVERY_7_STEPS = [
    "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
    "--trainer.callbacks.every_n_train_steps=7",
    "--trainer.callbacks.save_top_k=-1",
    "--trainer.callbacks.save_last=true",
]


def train(cwd: Path, *extra: str, config: str = LCA_CONFIG) -> subprocess.CompletedProcess:
    cwd.mkdir(exist_ok=True)
    command = [sys.executable, str(ROOT / "train.py"), "fit", "--config", config, *SHORT, *extra]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def run_dir(cwd: Path, version: int) -> Path:
    return cwd / "runs" / "mnist_fc_lca" / f"version_{version}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def final_weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


# ------------------------------------------------------------------ kill -9, then resume
def test_kill_9_and_resume_from_a_mid_epoch_checkpoint_equals_an_uninterrupted_shuffled_run(tmp_path):
    whole = train(tmp_path / "whole", "--trainer.max_epochs=3", *EVERY_7_STEPS)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = train(
        tmp_path / "killed", "--trainer.max_epochs=3", *EVERY_7_STEPS,
        "--trainer.callbacks+=tests.lca_support.KillAtStep", "--trainer.callbacks.step=17",
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    first = run_dir(tmp_path / "killed", 0)
    assert LCARun(first / "lca.h5").steps["step"].tolist() == list(range(15))  # up to its last flush
    killed_store = digest(first / "lca.h5")

    checkpoint = first / "checkpoints" / "epoch=1-step=14.ckpt"  # mid-epoch: 4 of 10 batches done
    resumed = train(
        tmp_path / "killed", "--trainer.max_epochs=3", *EVERY_7_STEPS, f"--ckpt_path={checkpoint}"
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "not resumable" not in resumed.stderr

    expected, again = (
        LCARun(run_dir(tmp_path / "whole", 0) / "lca.h5"),
        LCARun(run_dir(tmp_path / "killed", 1) / "lca.h5"),
    )
    assert again.steps["step"].tolist() == list(range(30))
    for name, values in expected.steps.items():
        np.testing.assert_array_equal(again.steps[name], values, err_msg=name)
    for name, values in expected.totals.items():
        np.testing.assert_array_equal(again.totals[name], values, err_msg=name)
    assert again.attrs["resumed_from"] == f"{(first / 'lca.h5').resolve()} at step 14"
    for name, weights in final_weights(run_dir(tmp_path / "whole", 0)).items():
        assert torch.equal(final_weights(run_dir(tmp_path / "killed", 1))[name], weights), name
    assert digest(first / "lca.h5") == killed_store  # the killed run's store was only read


# ------------------------------------------------------------------ a checkpoint of another run
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("a")
    result = train(cwd, "--trainer.max_epochs=1")
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir(cwd, 0)


def test_a_checkpoint_of_another_run_never_writes_into_that_runs_store(finished_run, tmp_path):
    checkpoint = finished_run / "checkpoints" / "epoch=0-step=10.ckpt"
    before = digest(finished_run / "lca.h5")
    result = train(
        tmp_path, "--trainer.max_epochs=2", "--trainer.callbacks.init_args.integrator=first_order",
        f"--ckpt_path={checkpoint}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert digest(finished_run / "lca.h5") == before
    own = LCARun(run_dir(tmp_path, 0) / "lca.h5")
    source = LCARun(finished_run / "lca.h5")
    assert own.steps["step"].tolist() == list(range(20))
    np.testing.assert_array_equal(own.steps["lca_sum"][:10], source.steps["lca_sum"])  # history copied
    assert own.attrs["integrator"] == "first_order" and source.attrs["integrator"] == "rk4"
    assert (
        own.attrs["resumed_from"].endswith("lca.h5 at step 10")
        and own.attrs["run_id"] != source.attrs["run_id"]
    )


def test_a_checkpoint_whose_store_was_replaced_by_another_runs_starts_a_new_store(finished_run, tmp_path):
    other = tmp_path / "other.h5"
    shutil.copy(finished_run / "lca.h5", other)
    with h5py.File(other, "r+") as file:
        file.attrs["run_id"] = "another run"
    state = torch.load(finished_run / "checkpoints" / "epoch=0-step=10.ckpt", weights_only=False)
    entry = {
        key: value for key, value in state["callbacks"]["LossChangeAllocation"].items() if key != "checksum"
    }
    entry["store_path"] = str(other)
    state["callbacks"]["LossChangeAllocation"] = {**entry, "checksum": state_crc(entry)}
    torch.save(state, tmp_path / "pointing_elsewhere.ckpt")
    before = digest(other)
    result = train(tmp_path, "--trainer.max_epochs=2", f"--ckpt_path={tmp_path / 'pointing_elsewhere.ckpt'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"the LCA store {other} belongs to another run than the checkpoint" in result.stderr
    own = LCARun(run_dir(tmp_path, 0) / "lca.h5")
    assert own.steps["step"].tolist() == list(range(10, 20)) and own.totals["steps"] == 20
    assert digest(other) == before


def test_a_fresh_run_refuses_to_replace_an_existing_store(tmp_path):
    (tmp_path / "lca.h5").write_bytes(b"another run's records")
    with pytest.raises(UserInputError, match=r"lca.h5 already exists and belongs to another run"):
        LCAStore.create(tmp_path / "lca.h5", None, {}, None, {}, dense=())
    assert (tmp_path / "lca.h5").read_bytes() == b"another run's records"


def test_a_damaged_checkpoint_state_is_refused_on_load(finished_run):
    state = torch.load(finished_run / "checkpoints" / "epoch=0-step=10.ckpt", weights_only=False)
    entry = state["callbacks"]["LossChangeAllocation"]
    LossChangeAllocation().load_state_dict(entry)  # intact: accepted
    entry["totals"]["lca"][3] += 1e-6
    with pytest.raises(UserInputError, match="LossChangeAllocation state fails its checksum"):
        LossChangeAllocation().load_state_dict(entry)


# ------------------------------------------------------------------ damaged stores
@pytest.mark.parametrize("kept", [4096, 0.5])
def test_a_store_cut_short_is_refused_at_once(finished_run, tmp_path, kept):
    cut = tmp_path / "lca.h5"
    shutil.copy(finished_run / "lca.h5", cut)
    size = cut.stat().st_size
    with cut.open("r+b") as file:
        file.truncate(kept if isinstance(kept, int) else int(size * kept))
    with pytest.raises(DamagedStore, match=rf"lca.h5 is cut short: [\d,]+ of its {size:,} bytes are there"):
        LCARun(cut)
    with pytest.raises(SystemExit, match=r"^error: .*lca.h5 is cut short"):
        report.main(["lca", str(cut)])


def flip_bit(path: Path, dataset: str, byte: int) -> None:
    with h5py.File(path, "r") as file:
        item = file[dataset]
        offset = item.id.get_offset() if item.chunks is None else item.id.get_chunk_info(0).byte_offset
    with path.open("r+b") as file:
        file.seek(offset + byte)
        value = file.read(1)[0]
        file.seek(offset + byte)
        file.write(bytes([value ^ 0x10]))


def test_a_flipped_bit_in_the_totals_is_refused(finished_run, tmp_path):
    flipped = tmp_path / "lca.h5"
    shutil.copy(finished_run / "lca.h5", flipped)
    flip_bit(flipped, "totals/lca", 8 * 1000 + 6)
    with pytest.raises(
        DamagedStore, match=r"running totals \(totals/\*\) fail their checksum; the step records of all 10"
    ):
        LCARun(flipped)


def test_a_flipped_bit_in_a_step_row_names_the_dataset_and_the_intact_steps(finished_run, tmp_path):
    flipped = tmp_path / "lca.h5"
    shutil.copy(finished_run / "lca.h5", flipped)
    flip_bit(flipped, "steps/loss_end", 8 * 7 + 5)  # step 7: flushed with steps 5..9
    with pytest.raises(
        DamagedStore,
        match=r"steps/loss_end fails its checksum; the step records are intact for the first 5 steps",
    ):
        LCARun(flipped)


def test_a_store_that_cannot_be_written_ends_the_run_with_one_line(monkeypatch, tmp_path):
    def disk_full(self, name, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LCAStore, "_append", disk_full)
    with pytest.raises(
        UserInputError, match=r"cannot write the LCA store .*lca.h5: OSError: \[Errno 28\] No sp"
    ):
        cli_main(["fit", "--config", LCA_CONFIG, *SHORT, "--trainer.max_steps=6"])


# ------------------------------------------------------------------ outputs named apart
def test_images_with_the_same_name_in_two_folders_get_their_own_explanations(tmp_path):
    for folder, colour in (("a", 0), ("b", 255)):
        (tmp_path / folder).mkdir()
        Image.new("L", (28, 28), colour).save(tmp_path / folder / "digit.png")
    quickstart = [
        "--config", str(ROOT / "configs" / "mnist_fc_sample.yaml"), "--trainer.max_steps=2",
        "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
    ]  # fmt: skip
    fit = cli_main(quickstart, run=False)
    fit.trainer.fit(fit.model, fit.datamodule)
    with pytest.warns(
        UserWarning, match="data.predict_files names 1 files more than once; each is read once"
    ):
        predict = cli_main(
            [
                "predict", *quickstart, f"--ckpt_path={fit.trainer.checkpoint_callback.best_model_path}",
                f"--data.predict_files=[{tmp_path}/a/digit.png,{tmp_path}/b/*.png,{tmp_path}/a/digit.png]",
                "--trainer.callbacks+=callbacks.explanation_writer.ExplanationWriter",
                "--trainer.callbacks.methods={Saliency: {}}",
            ]
        )  # fmt: skip
    out = Path(predict.trainer.log_dir) / "explanations"  # inside the predict run's own folder
    assert out.parent.resolve() == tmp_path / "runs" / "mnist_fc_sample" / "version_1"
    assert sorted(path.name for path in out.iterdir()) == ["a__digit.png", "b__digit.png"]
    black, white = (
        json.loads((out / name / "predictions.json").read_text()) for name in sorted(os.listdir(out))
    )
    assert black != white  # each folder holds its own image's prediction


def test_output_names_are_stems_unless_two_files_share_one():
    paths = [Path("x/a/digit.png"), Path("x/b/digit.png"), Path("x/a/seven.png"), Path("x/a/digit.jpg")]
    assert output_names(paths) == ["a__digit.png", "b__digit.png", "seven", "a__digit.jpg"]


# ------------------------------------------------------------------ images that cannot be read as they are
def test_a_16_bit_png_is_scaled_by_its_range_not_saturated(tmp_path):
    values = (np.arange(28 * 28).reshape(28, 28) * 80).astype(np.uint16)  # 0 .. 62,640
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png", (1, 28, 28))
    np.testing.assert_allclose(image[0].numpy(), values / 65535, atol=1e-6)
    rgb = read_image(tmp_path / "deep.png", (3, 28, 28))
    assert rgb.shape == (3, 28, 28) and torch.equal(rgb[0], rgb[2])


def test_an_image_drawn_in_its_alpha_channel_is_read_over_white_with_a_warning(tmp_path):
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[10:18, 10:18, 3] = 255  # a black square, visible only through alpha
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    with pytest.warns(UserWarning, match=r"alpha.png: its content is in the alpha channel only"):
        image = read_image(tmp_path / "alpha.png", (1, 28, 28))
    assert image[0, 12, 12] == 0 and image[0, 0, 0] == 1


def test_an_image_above_the_decompression_bomb_limit_names_the_limit(tmp_path, monkeypatch):
    Image.new("L", (300, 300)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(
        UserInputError,
        match=r"huge.png has more pixels than PIL's decompression-bomb limit.*MAX_IMAGE_PIXELS",
    ):
        read_image(tmp_path / "huge.png", (1, 28, 28))


# ------------------------------------------------------------------ SpaceNet labels that cannot be right
def swap_coordinates(coordinates):
    if isinstance(coordinates[0], float | int):
        return [coordinates[1], coordinates[0], *coordinates[2:]]
    return [swap_coordinates(part) for part in coordinates]


def test_labels_with_longitude_and_latitude_swapped_are_named_and_their_split_flagged(tmp_path):
    aoi = make_spacenet6(tmp_path, tiles=4)
    for label in sorted((aoi / "geojson_buildings").glob("*.geojson")):
        collection = json.loads(label.read_text())
        for feature in collection["features"]:
            feature["geometry"]["coordinates"] = swap_coordinates(feature["geometry"]["coordinates"])
        label.write_text(json.dumps(collection))
    data = SpaceNetDataModule(
        aoi, cache_dir=tmp_path / "cache", crop_size=32, split="random", val_fraction=0.25
    )
    with pytest.warns(
        UserWarning,
        match=r"in 4 label files no geometry touches its tile.*SN6_Train_AOI_11_Rotterdam_Buildings",
    ):
        data.prepare_data()
    with pytest.warns(UserWarning, match=r"the train split has no labelled pixel in its 2 tiles"):
        data.setup()


def test_projected_coordinates_without_a_crs_member_are_refused_in_one_line(tmp_path):
    aoi = make_spacenet6(tmp_path, tiles=2)
    label = sorted((aoi / "geojson_buildings").glob("*.geojson"))[0]
    write_geojson(label, [pixel_box(tile_transform(), 10, 10, 8, 8)], crs="EPSG:32631")
    collection = json.loads(label.read_text())
    del collection["crs"]  # UTM metres, but no crs member: read as longitude/latitude
    label.write_text(json.dumps(collection))
    with pytest.raises(
        UserInputError,
        match=r"has no crs member, so its coordinates must be longitude/latitude, but they span x 600,005",
    ):
        SpaceNetDataModule(aoi, cache_dir=tmp_path / "cache", crop_size=32).prepare_data()


def test_soft_iou_of_a_set_without_a_valid_pixel_is_nan_with_a_warning():
    metric = SoftIoU(ignore_index=255)
    metric.update(torch.rand(2, 8, 8), torch.full((2, 8, 8), 255))
    with pytest.warns(UserWarning, match="soft_iou: no valid"):
        assert torch.isnan(metric.compute())
    metric.update(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long))  # valid, nothing to find
    assert metric.compute() == 1.0


# ------------------------------------------------------------------ one line naming the key or file
def run_train(monkeypatch, *args: str) -> str:
    """``train.py`` with ``args``: the message it exits with (it must exit with one)."""
    monkeypatch.setattr(sys, "argv", ["train.py", *args])
    with pytest.raises(SystemExit) as exit_:
        train_main()
    assert isinstance(exit_.value.code, str) and "\n" not in exit_.value.code
    return exit_.value.code


PLAIN = ["fit", "--config", str(ROOT / "configs" / "mnist_fc_sample.yaml"), "--trainer.max_steps=1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data.batch_size=0"], "error: data.batch_size=0 must be positive"),
        (["--data.num_workers=-2"], "error: data.num_workers=-2 must be 0 or more"),
        (
            ["--trainer.callbacks+=callbacks.attribution.AttributionCallback",
             "--trainer.callbacks.methods={Salincy: {}}"],
            "error: attribution method 'Salincy' is not one of the registered image attribution methods: Lay",
        ),
    ],
)  # fmt: skip
def test_impossible_values_and_errors_raised_while_building_a_callback_end_in_one_line(
    monkeypatch, args, message
):
    assert run_train(monkeypatch, *PLAIN, *args).startswith(message)


def test_broken_config_files_are_named(monkeypatch, tmp_path):
    (tmp_path / "broken.yaml").write_text("trainer: [\n")
    message = run_train(monkeypatch, "fit", "--config", str(tmp_path / "broken.yaml"))
    assert message.startswith(f"error: --config {tmp_path / 'broken.yaml'} is not valid YAML: ")
    assert f'in "{tmp_path / "broken.yaml"}", line 2' in message
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    message = run_train(monkeypatch, "fit", "--config", str(tmp_path / "empty.yaml"))
    assert message == (
        f"error: --config {tmp_path / 'empty.yaml'} holds no settings (empty, or not a mapping of keys); "
        "see configs/quickstart.yaml"
    )


def test_unreadable_checkpoints_are_named(monkeypatch, finished_run, tmp_path):
    real = (finished_run / "checkpoints" / "epoch=0-step=10.ckpt").read_bytes()
    for name, content in (("empty", b""), ("cut", real[: len(real) // 2]), ("text", b"not a checkpoint\n")):
        (tmp_path / f"{name}.ckpt").write_bytes(content)
        message = run_train(monkeypatch, *PLAIN, f"--ckpt_path={tmp_path / name}.ckpt")
        assert message.startswith(
            f"error: --ckpt_path {tmp_path / name}.ckpt is not a readable checkpoint (BadZipFile"
        )
    flipped = bytearray(real)
    flipped[len(real) // 3] ^= 0xFF
    (tmp_path / "flipped.ckpt").write_bytes(bytes(flipped))
    message = run_train(monkeypatch, *PLAIN, f"--ckpt_path={tmp_path / 'flipped.ckpt'}")
    assert message.startswith(f"error: --ckpt_path {tmp_path / 'flipped.ckpt'} is damaged (")


def test_a_run_folder_that_cannot_be_written_is_named_and_a_failed_start_leaves_no_folder(monkeypatch):
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "runs/mnist_fc_sample/version_0/versions.yaml")

    monkeypatch.setattr("lightning_app.run_record.environment_versions", read_only)
    message = run_train(monkeypatch, *PLAIN)
    assert message == (
        "error: cannot write runs/mnist_fc_sample/version_0/versions.yaml: Permission denied; free space or "
        "make the folder writable, or write the run elsewhere (--trainer.default_root_dir)"
    )
    assert not Path("runs/mnist_fc_sample/version_0").exists()


def test_a_run_that_fails_in_set_up_leaves_no_run_folder(monkeypatch, tmp_path):
    message = run_train(monkeypatch, *PLAIN, "--data.source=full", f"--data.data_dir={tmp_path}/none")
    assert message.startswith(f"error: MNIST files missing in {tmp_path}/none/MNIST/raw: ")
    assert list(Path("runs/mnist_fc_sample").iterdir()) == []


def test_a_binary_file_given_to_the_evaluator_is_named(tmp_path):
    (tmp_path / "truth.csv").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SystemExit, match=r"^error: .*truth.csv is not a CSV text file \(UnicodeDecodeError"):
        evaluate.main(["spacenet-buildings", "--truth", str(tmp_path / "truth.csv"), "--proposal", "p.csv"])


def test_the_report_writes_elsewhere_when_the_run_folder_is_read_only(
    finished_run, tmp_path, monkeypatch, capsys
):
    report.main(["lca", str(finished_run), "--out", str(tmp_path / "figures"), "--json"])
    numbers = json.loads(capsys.readouterr().out)
    assert (
        numbers["figures"][0].startswith(str(tmp_path / "figures"))
        and (tmp_path / "figures" / "loss.png").is_file()
    )
    monkeypatch.setattr(
        "matplotlib.figure.Figure.savefig",
        lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")),
    )
    with pytest.raises(
        SystemExit,
        match=r"^error: cannot write the LCA report into .*lca_report: PermissionError.*with --out$",
    ):
        report.main(["lca", str(finished_run)])


def test_the_train_loader_counts_as_shuffled_so_ddp_shuffles_it_too():
    data = MNISTDataModule(source="sample")
    data.setup()
    assert _is_dataloader_shuffled(data.train_dataloader())
    assert not _is_dataloader_shuffled(data.val_dataloader())
