"""The figures logged to TensorBoard: panels at their true aspect, enlarged to a readable size, with a
colour bar of the values shown."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from callbacks.activations import GREY, feature_map_figure, filter_figure
from callbacks.attribution.figures import attribution_figure, heat_scale
from callbacks.mosaic import MIN_PANEL_PIXELS, Caption

MARKER = (0.2, 0.6, 0.9)  # a colour no caption, heat map or overlay produces


def logged_image(figure, tmp_path) -> np.ndarray:
    """``figure`` written by TensorBoard's SummaryWriter and read back from the event file as RGB."""
    with SummaryWriter(str(tmp_path)) as writer:
        writer.add_figure("figure", figure, 0)
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    (image,) = events.Images("figure")
    return np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))


def marker_boxes(image: np.ndarray, colour: tuple[float, float, float]) -> list[tuple[int, int]]:
    """(height, width) of each connected region of ``colour`` (in [0, 1], to 8-bit rounding), left to
    right."""
    regions, _ = ndimage.label(np.all(np.abs(image - 255 * np.array(colour)) <= 1, axis=2))
    boxes = ndimage.find_objects(regions)
    return [
        (rows.stop - rows.start, cols.stop - cols.start)
        for rows, cols in sorted(boxes, key=lambda b: b[1].start)
    ]


@pytest.mark.parametrize("height, width", [(28, 28), (20, 45), (64, 17)])
def test_attribution_panels_keep_the_input_aspect_and_are_enlarged(tmp_path, height, width):
    display = torch.tensor(MARKER)[None, :, None, None].expand(3, 3, height, width).clone()
    values = torch.randn(3, 3, height, width, generator=torch.Generator().manual_seed(0))
    captions = [Caption(f"#{i}\n7 p=0.90\ntrue 1", alert=True) for i in range(3)]
    image = logged_image(attribution_figure("Saliency", display, values, captions), tmp_path)
    panels = marker_boxes(image, MARKER)
    assert len(panels) == 3  # the three inputs, whole
    for panel_height, panel_width in panels:
        assert panel_width / panel_height == pytest.approx(width / height, rel=0.02)
        assert min(panel_height, panel_width) >= MIN_PANEL_PIXELS
    assert image.shape[1] >= 3 * panels[0][1]  # the probe images side by side, as columns


def test_feature_map_and_filter_panels_keep_their_aspect(tmp_path):
    maps = torch.zeros(4, 6, 15)
    maps[0] = 0.5
    maps[0, 3, 7] = 1.0  # the strongest channel: mid-grey around one white pixel
    image = logged_image(feature_map_figure("net.conv1", maps, None, "image #0"), tmp_path / "maps")
    grey = GREY(0.5)[:3]
    (panel,) = [box for box in marker_boxes(image, grey) if box[0] >= MIN_PANEL_PIXELS]
    assert panel[1] / panel[0] == pytest.approx(15 / 6, rel=0.02)

    kernels = torch.arange(2 * 3 * 3 * 7, dtype=torch.float32).reshape(2, 3, 3, 7)
    image = logged_image(filter_figure("net.conv1", kernels), tmp_path / "filters")
    assert min(image.shape[:2]) >= MIN_PANEL_PIXELS


def test_heat_scale_is_the_98th_percentile_of_absolute_values():
    maps = [np.arange(-50, 50, dtype=float).reshape(10, 10), np.zeros((10, 10))]
    assert heat_scale(maps) == pytest.approx(
        np.percentile(np.abs(np.concatenate([m.ravel() for m in maps])), 98)
    )
    assert heat_scale([np.zeros((3, 3))]) == 0.0
