"""What the attribution view draws: the recorded probe images x methods at full resolution (as PNG, the
callback's colours and its 98th-percentile scale), each method's sanity verdict, and the faithfulness
metrics over training (``faithfulness.csv``)."""

import csv
import io
from pathlib import Path

import numpy as np

from callbacks.attribution.faithfulness_callback import BETTER, CSV_FILE
from callbacks.attribution.figures import attribution_panels, heat_scale
from callbacks.attribution.records import (
    AttributionRecord,
    load_record,
    load_sanity,
    record_path,
    recorded_steps,
)
from callbacks.feature_vis.figure import eight_bit
from lightning_app.errors import UserInputError
from lightning_app.tab.record_cache import cached

PANELS = ("input", "attribution", "overlay")


def attribution_index(run_dir: Path) -> dict:
    """The steps with records, and for the newest: its methods and probe images; the sanity verdicts
    (``rejected``: the randomisation check finds the maps barely change with a randomised model)."""
    steps = recorded_steps(run_dir)
    if not steps:
        raise UserInputError(f"{run_dir} holds no attribution records (attributions/step_*.npz)")
    record = _record(run_dir, steps[-1])
    sanity = load_sanity(run_dir)
    verdicts = {}
    if sanity is not None:
        for method, numbers in sanity["methods"].items():
            verdicts[method] = {**numbers, "rejected": bool(numbers.get("insensitive"))}
    images = [
        {
            "position": position,
            "index": int(record.indices[position]),
            "label": _class(record, int(record.labels[position])),
            "explained": _class(record, int(record.classes[position])),
            "probability": float(record.probabilities[position]),
        }
        for position in range(len(record.indices))
    ]
    return {
        "steps": steps,
        "methods": list(record.maps),
        "class_names": record.class_names,
        "images": images,
        "sanity": verdicts,
        "randomisation_threshold": None if sanity is None else sanity["randomisation_threshold"],
        "sanity_step": None if sanity is None else sanity["step"],
    }


def attribution_png(run_dir: Path, step: int, method: str, position: int, panel: str) -> bytes:
    """One panel (input, attribution or overlay) of one probe image at its own resolution, on the scale
    the callback's figure uses for the method at that step."""
    if panel not in PANELS:
        raise UserInputError(f"panel {panel!r} must be one of {list(PANELS)}")
    record = _record(run_dir, step)
    if method not in record.maps:
        raise UserInputError(
            f"method {method!r} was not recorded at step {step}; recorded: {list(record.maps)}"
        )
    if not 0 <= position < len(record.indices):
        raise UserInputError(f"image {position} is not a probe position (0 to {len(record.indices) - 1})")
    maps = record.maps[method]
    pixels = np.transpose(record.display[position], (1, 2, 0))
    pixels = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[..., :3]
    panels = attribution_panels(pixels, maps[position].astype(np.float64), heat_scale(list(maps)))
    return png_bytes(panels[PANELS.index(panel)])


def png_bytes(pixels: np.ndarray) -> bytes:
    """An (H, W, 3) float image in [0, 1] as PNG bytes."""
    buffer = io.BytesIO()
    eight_bit(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _record(run_dir: Path, step: int) -> AttributionRecord:
    return cached(record_path(run_dir, step), lambda: load_record(run_dir, step))


def faithfulness_view(run_dir: Path) -> dict:
    """Per metric, per method, the values over training from ``faithfulness.csv`` (empty without it)."""
    path = Path(run_dir) / CSV_FILE
    metrics: dict[str, dict[str, dict[str, list]]] = {}
    if path.is_file():
        with path.open(newline="") as file:
            for row in csv.DictReader(file):
                series = metrics.setdefault(row["metric"], {}).setdefault(row["method"], {"x": [], "y": []})
                series["x"].append(int(row["step"]))
                series["y"].append(float(row["value"]))
    return {"metrics": metrics, "better": {metric: BETTER.get(metric) for metric in metrics}}


def _class(record, index: int) -> str | None:
    if index < 0:
        return None
    return record.class_names[index] if index < len(record.class_names) else str(index)
