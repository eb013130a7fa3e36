"""A figure of many small image panels, assembled into one mosaic and drawn with a single ``imshow``:
fast enough to log every few epochs (a figure of thirty panels renders in a fraction of a second)."""

import numpy as np
from matplotlib.figure import Figure

PANEL_INCHES = 1.5
GAP = 2
LABEL_ROOM = 8


def mosaic_figure(
    title: str, rows: list[list[np.ndarray]], labels: list[list[str]], inches: float = PANEL_INCHES
) -> Figure:
    """Rows of equally sized (H, W, 3) panels in [0, 1], each with its label above it."""
    height, width = rows[0][0].shape[:2]
    columns = max(len(panels) for panels in rows)
    row_height = height + LABEL_ROOM
    mosaic = np.ones((len(rows) * row_height, columns * (width + GAP), 3))
    for r, panels in enumerate(rows):
        top = r * row_height + LABEL_ROOM
        for c, panel in enumerate(panels):
            left = c * (width + GAP)
            mosaic[top : top + height, left : left + width] = np.clip(panel, 0, 1)
    title_inches = 0.35
    figure = Figure(figsize=(inches * columns, inches * len(rows) + title_inches))
    axis = figure.add_axes((0, 0, 1, 1 - title_inches / (inches * len(rows) + title_inches)))
    axis.imshow(mosaic, interpolation="nearest", aspect="auto")
    axis.set_axis_off()
    figure.suptitle(title, fontsize=8)
    for r, row_labels in enumerate(labels):
        for c, label in enumerate(row_labels):
            if label:
                colour = "red" if label.endswith("max") else "black"
                axis.text(c * (width + GAP), r * row_height + LABEL_ROOM - 1, label, fontsize=6, color=colour)
    return figure
