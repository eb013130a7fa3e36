"""What the feature-visualisation view draws: per layer a gallery of channel renders, and per channel its
renders across training, its top and bottom dataset examples among the probe images, and its LCA over
training when the run has an LCA store that records the layer's units."""

import numpy as np
import torch

from callbacks.feature_vis.figure import display_rgb
from callbacks.feature_vis.records import FeatureVisRecord, load_record, record_path, recorded
from callbacks.lca.store import LCARun
from lightning_app.errors import UserInputError
from lightning_app.tab.attribution_data import png_bytes
from lightning_app.tab.downsample import min_max
from lightning_app.tab.record_cache import cached

EXAMPLES = 5  # top and bottom examples shown per channel


def feature_vis_index(run_dir) -> dict:
    """Layer -> the steps it was rendered at, and the channels and values of its newest render."""
    layers = recorded(run_dir)
    if not layers:
        raise UserInputError(f"{run_dir} holds no feature visualisations (feature_vis/step_*/<layer>.npz)")
    gallery = {}
    for layer, steps in layers.items():
        record = _record(run_dir, steps[-1], layer)
        gallery[layer] = {
            "steps": steps,
            "channels": record.channels.tolist(),
            "values": record.values.tolist(),
        }
    return {"layers": gallery}


def newest_renders(run_dir, layer: str) -> dict:
    """Channel -> {step, position} of the layer's newest render (empty when it was never rendered)."""
    steps = recorded(run_dir).get(layer)
    if not steps:
        return {}
    record = _record(run_dir, steps[-1], layer)
    channels = record.channels.tolist()
    return {int(c): {"step": steps[-1], "position": p} for p, c in enumerate(channels) if c >= 0}


def render_png(run_dir, step: int, layer: str, position: int, bands: list[int] | None) -> bytes:
    """Render ``position`` of a layer at ``step`` as PNG (grey, RGB, or the chosen display ``bands``)."""
    record = _record(run_dir, step, layer)
    if not 0 <= position < len(record.images):
        raise UserInputError(f"render {position} is not 0 to {len(record.images) - 1}")
    return png_bytes(display_rgb(torch.from_numpy(record.images[position]), bands))


def example_png(
    run_dir, step: int, layer: str, probe: int, box: tuple[int, int, int, int] | None, bands
) -> bytes:
    """Probe image ``probe`` of a record, cropped to ``box`` (top, left, bottom, right) when given."""
    record = _record(run_dir, step, layer)
    if not 0 <= probe < len(record.probe_display):
        raise UserInputError(f"probe image {probe} is not 0 to {len(record.probe_display) - 1}")
    pixels = display_rgb(torch.from_numpy(record.probe_display[probe]), bands)
    if box is not None:
        top, left, bottom, right = box
        pixels = pixels[top:bottom, left:right]
    return png_bytes(pixels)


def channel_view(run_dir, layer: str, channel: int, lca: LCARun | None, buckets: int) -> dict:
    """A channel's renders across steps (the position of its render in each record and the value
    reached), its top examples (with the receptive-field crop box) and bottom examples at the newest
    step, and its cumulative LCA over training when ``lca`` records the layer's units."""
    steps = recorded(run_dir).get(layer)
    if not steps:
        raise UserInputError(
            f"layer {layer!r} has no feature visualisations; recorded: {list(recorded(run_dir))}"
        )
    renders, newest = [], None
    for step in steps:
        record = _record(run_dir, step, layer)
        positions = np.flatnonzero(record.channels == channel)
        if len(positions):
            renders.append(
                {"step": step, "position": int(positions[0]), "value": float(record.values[positions[0]])}
            )
            newest = record
    if newest is None:
        raise UserInputError(f"channel {channel} of {layer!r} was never rendered")
    row = renders[-1]["position"]
    values = newest.probe_values[row]
    order = np.argsort(-values)
    boxes = {int(b[0]): [int(v) for v in b[1:]] for b in newest.top_boxes[row] if b[0] >= 0}
    view = {
        "layer": layer,
        "channel": channel,
        "renders": renders,
        "examples_step": renders[-1]["step"],
        "top": [_example(newest, int(p), values, boxes.get(int(p))) for p in order[:EXAMPLES]],
        "bottom": [_example(newest, int(p), values, None) for p in order[::-1][:EXAMPLES]],
        "lca": _unit_lca(lca, layer, channel, buckets),
    }
    return view


def _record(run_dir, step: int, layer: str) -> FeatureVisRecord:
    return cached(record_path(run_dir, step, layer), lambda: load_record(run_dir, step, layer))


def _example(record, position: int, values: np.ndarray, box) -> dict:
    return {
        "probe": position,
        "index": int(record.probe_indices[position]),
        "value": float(values[position]),
        "box": box,
    }


def _unit_lca(lca: LCARun | None, layer: str, channel: int, buckets: int) -> dict | None:
    """The unit's cumulative LCA over training, or None when the store does not record the layer."""
    if lca is None:
        return None
    rows = np.flatnonzero(np.array(lca.neuron_modules) == layer)
    if channel >= len(rows):
        return None
    values = np.nan_to_num(lca.steps["neuron_lca"][:, rows[channel]].astype(np.float64))
    values[~lca.steps["valid"].astype(bool)] = 0.0
    x, y = min_max(lca.steps["step"], np.cumsum(values), buckets)
    return {"x": x.tolist(), "y": y.tolist(), "total": float(values.sum())}
