import json
import subprocess
import sys
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from models.classification import ClassificationModule

ROOT = Path(__file__).parents[1]


def test_fit_with_ddp_on_two_cpu_processes(tmp_path):
    markers = tmp_path / "markers"
    command = [
        sys.executable, str(ROOT / "train.py"), "fit",
        "--config", str(ROOT / "configs" / "mnist_fc_sample.yaml"),
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=6", "--trainer.limit_val_batches=2",
        "--trainer.enable_progress_bar=false",
        "--trainer.callbacks+=tests.rank_marker.RankMarker", f"--trainer.callbacks.out_dir={markers}",
        "--trainer.callbacks+=callbacks.attribution.AttributionCallback",
        "--trainer.callbacks.methods={Saliency: {}}", "--trainer.callbacks.sanity_checks=false",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    records = [json.loads((markers / f"rank_{rank}.json").read_text()) for rank in (0, 1)]
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" for r in records)
    assert [r["global_step"] for r in records] == [6, 6]
    # the ranks train on different halves of the data but keep identical weights
    assert records[0]["weight_checksum"] == records[1]["weight_checksum"]

    # attribution ran on rank 0 only, once at the end of fit, and no rank hung waiting for it
    run_dir = tmp_path / "runs" / "mnist_fc_sample" / "version_0"
    log = EventAccumulator(str(run_dir), size_guidance={"images": 0}).Reload()
    assert [event.step for event in log.Images("attribution/Saliency")] == [6]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1

    checkpoint = tmp_path / "runs" / "mnist_fc_sample" / "version_0" / "checkpoints" / "epoch=0-step=6.ckpt"
    model = ClassificationModule.load_from_checkpoint(checkpoint, map_location="cpu")
    checksum = sum(p.detach().double().sum().item() for p in model.parameters())
    assert checksum == records[0]["weight_checksum"]
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
