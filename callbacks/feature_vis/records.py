"""The feature-visualisation records a run keeps for the Interpretability tab:
``feature_vis/step_<N>/<layer>.npz`` per inspection and layer: the rendered images (display space, all
bands, half precision), their channels and the activation each reached, the probe images (display
space) and every channel's mean activation on each of them (so the tab ranks the top and bottom
dataset examples), and the crop box of each channel's top examples (its receptive field)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_app.errors import UserInputError

FOLDER = "feature_vis"


@dataclass
class FeatureVisRecord:
    """One layer's renders at one step, as stored."""

    step: int
    layer: str
    images: np.ndarray  # (channels, bands, H, W) in [0, 1]
    channels: np.ndarray  # (channels,) the channel (or class) index of each render; -1 for a layer render
    values: np.ndarray  # (channels,) the objective reached
    probe_display: np.ndarray  # (N, bands, H, W)
    probe_indices: np.ndarray  # (N,) the position of each probe image in its source
    probe_values: np.ndarray  # (channels, N) each channel's mean activation on each probe image
    top_boxes: np.ndarray  # (channels, k, 5): probe position, top, left, bottom, right of the top examples


def record_path(run_dir: Path, step: int, layer: str) -> Path:
    return Path(run_dir) / FOLDER / f"step_{step:08d}" / f"{layer}.npz"


def save_record(run_dir: Path, record: FeatureVisRecord) -> Path:
    path = record_path(run_dir, record.step, record.layer)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, images=record.images.astype(np.float16), channels=record.channels,
        values=record.values.astype(np.float32), probe_display=record.probe_display.astype(np.float16),
        probe_indices=record.probe_indices, probe_values=record.probe_values.astype(np.float32),
        top_boxes=record.top_boxes.astype(np.int64),
    )  # fmt: skip
    return path


def recorded(run_dir: Path) -> dict[str, list[int]]:
    """Layer -> the steps at which it was rendered, in order."""
    layers: dict[str, list[int]] = {}
    for path in sorted((Path(run_dir) / FOLDER).glob("step_*/*.npz")):
        layers.setdefault(path.stem, []).append(int(path.parent.name.removeprefix("step_")))
    return layers


def load_record(run_dir: Path, step: int, layer: str) -> FeatureVisRecord:
    path = record_path(run_dir, step, layer)
    if not path.is_file():
        raise UserInputError(
            f"no feature visualisation of {layer!r} at step {step}; recorded: {recorded(run_dir)}"
        )
    with np.load(path, allow_pickle=False) as data:
        return FeatureVisRecord(
            step, layer, data["images"].astype(np.float32), data["channels"], data["values"],
            data["probe_display"].astype(np.float32), data["probe_indices"], data["probe_values"],
            data["top_boxes"],
        )  # fmt: skip
