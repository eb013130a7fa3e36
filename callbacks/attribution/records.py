"""The attribution records a run keeps for the Interpretability tab: ``attributions/step_<N>.npz`` per
inspection (the probe images in display space, their indices, labels, the explained classes with their
probabilities, and per method the attribution summed over channels, full resolution) and
``attributions/sanity.json`` (each method's sanity-check numbers and whether the randomisation check
rejects it)."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lightning_app.errors import UserInputError

FOLDER = "attributions"
SANITY_FILE = "sanity.json"


@dataclass
class AttributionRecord:
    """One inspection's probe images and maps, as stored."""

    step: int
    display: np.ndarray  # (N, C, H, W) in [0, 1]
    indices: np.ndarray  # (N,) position of each image in its source
    labels: np.ndarray  # (N,) true class, -1 for a segmentation mask
    classes: np.ndarray  # (N,) explained class
    probabilities: np.ndarray  # (N,)
    class_names: list[str]
    maps: dict[str, np.ndarray]  # method -> (N, H, W) attribution summed over channels


def record_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / FOLDER / f"step_{step:08d}.npz"


def save_record(run_dir: Path, record: AttributionRecord) -> Path:
    """Write ``record`` beside the run's event files and return its path."""
    path = record_path(run_dir, record.step)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"map/{name}": values.astype(np.float32) for name, values in record.maps.items()}
    np.savez_compressed(
        path, display=record.display.astype(np.float16), indices=record.indices, labels=record.labels,
        classes=record.classes, probabilities=record.probabilities.astype(np.float32),
        class_names=np.array(record.class_names), methods=np.array(list(record.maps)), **arrays,
    )  # fmt: skip
    return path


def recorded_steps(run_dir: Path) -> list[int]:
    """The steps at which the run recorded attributions, in order."""
    folder = Path(run_dir) / FOLDER
    return sorted(int(path.stem.removeprefix("step_")) for path in folder.glob("step_*.npz"))


def load_record(run_dir: Path, step: int) -> AttributionRecord:
    path = record_path(run_dir, step)
    if not path.is_file():
        raise UserInputError(f"no attributions recorded at step {step}; recorded: {recorded_steps(run_dir)}")
    with np.load(path, allow_pickle=False) as data:
        maps = {str(method): data[f"map/{method}"] for method in data["methods"]}
        return AttributionRecord(
            step, data["display"].astype(np.float32), data["indices"], data["labels"], data["classes"],
            data["probabilities"], [str(name) for name in data["class_names"]], maps,
        )  # fmt: skip


def summed_maps(values: torch.Tensor) -> np.ndarray:
    """Attributions (N, C, H, W) summed over channels as float32 (N, H, W)."""
    return values.detach().sum(dim=1).double().cpu().numpy().astype(np.float32)


def save_sanity(run_dir: Path, step: int, sanity: dict[str, dict[str, float]], threshold: float) -> None:
    path = Path(run_dir) / FOLDER / SANITY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"step": step, "randomisation_threshold": threshold, "methods": sanity}
    path.write_text(json.dumps(content, indent=2) + "\n")


def load_sanity(run_dir: Path) -> dict | None:
    path = Path(run_dir) / FOLDER / SANITY_FILE
    return json.loads(path.read_text()) if path.is_file() else None
