"""Figures of many image panels at their true aspect, readable in a TensorBoard card.

Every panel is enlarged by a whole factor (nearest neighbour) until its short side has at least
``MIN_PANEL_PIXELS``, the panels are assembled into one array, and the array is drawn pixel for pixel:
one array pixel is one pixel of the logged PNG, so a 28x28 digit is a 112x112 square. Captions (9 pt)
sit above the panels, row names on the left, an optional colour bar with the value range on the right.
Drawing one array keeps a figure of thirty panels well under a second, fast enough to log every few
epochs.
"""

import math
from dataclasses import dataclass

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure

DPI = 100
MIN_PANEL_PIXELS = 100
FONT_POINTS = 9
LINE_PIXELS = 15  # one 9 pt line at 100 dpi, with leading
CHAR_PIXELS = 7  # a generous 9 pt character width, to keep captions from running into each other
GAP = 8
TITLE_PIXELS = 26
COLOUR_BAR_WIDTH = 14
COLOUR_BAR_ROOM = 110  # the bar, its tick labels and its label


@dataclass(frozen=True)
class Caption:
    """The text above a panel (lines separated by newlines); ``alert`` draws it in red."""

    text: str = ""
    alert: bool = False


@dataclass(frozen=True)
class Panel:
    """An (H, W, 3) image in [0, 1] and its caption."""

    pixels: np.ndarray
    caption: Caption = Caption()


@dataclass(frozen=True)
class ColourBar:
    """The colour scale of a figure's heat-map panels: the colormap, the values at its ends and what
    they measure."""

    colormap: Colormap | str
    low: float
    high: float
    label: str


def upscale_factor(height: int, width: int) -> int:
    """The whole factor that brings the short side of a panel to at least ``MIN_PANEL_PIXELS``."""
    return max(1, math.ceil(MIN_PANEL_PIXELS / min(height, width)))


def text_width(text: str) -> int:
    return max((len(line) for line in text.split("\n")), default=0) * CHAR_PIXELS


def text_height(text: str) -> int:
    return (text.count("\n") + 1) * LINE_PIXELS if text else 0


def mosaic_figure(
    title: str,
    rows: list[list[Panel]],
    row_names: list[str] | None = None,
    colour_bar: ColourBar | None = None,
) -> Figure:
    """Rows of equally sized panels, each enlarged by the same whole factor, with their captions above
    them, ``row_names`` on the left and ``colour_bar`` on the right."""
    height, width = rows[0][0].pixels.shape[:2]
    factor = upscale_factor(height, width)
    panel_height, panel_width = height * factor, width * factor
    columns = max(len(panels) for panels in rows)
    column_widths = [
        max([panel_width] + [text_width(panels[c].caption.text) for panels in rows if c < len(panels)])
        for c in range(columns)
    ]
    column_lefts = np.cumsum([0] + [w + GAP for w in column_widths])
    left = GAP + max((text_width(name) + GAP for name in row_names or []), default=0)
    caption_heights = [max(text_height(panel.caption.text) for panel in panels) for panels in rows]
    row_tops = TITLE_PIXELS + np.cumsum([0] + [c + panel_height + GAP for c in caption_heights])
    title_width = left + len(title) * (CHAR_PIXELS + 2) + GAP  # bold, one point larger
    total_width = max(title_width, left + int(column_lefts[-1]) + (COLOUR_BAR_ROOM if colour_bar else 0))
    total_height = max(
        int(row_tops[-1]), TITLE_PIXELS + 2 * GAP + text_width(colour_bar.label) if colour_bar else 0
    )

    mosaic = np.ones((total_height, total_width, 3))
    for r, panels in enumerate(rows):
        top = row_tops[r] + caption_heights[r]
        for c, panel in enumerate(panels):
            x = left + column_lefts[c]
            enlarged = np.repeat(np.repeat(np.clip(panel.pixels, 0, 1), factor, axis=0), factor, axis=1)
            mosaic[top : top + panel_height, x : x + panel_width] = enlarged

    figure = Figure(figsize=(total_width / DPI, total_height / DPI), dpi=DPI)
    axis = figure.add_axes((0, 0, 1, 1))
    axis.imshow(mosaic, interpolation="nearest")
    axis.set_axis_off()
    axis.text(left, TITLE_PIXELS / 2, title, fontsize=FONT_POINTS + 1, weight="bold", va="center")
    for r, panels in enumerate(rows):
        top = row_tops[r] + caption_heights[r]
        if row_names:
            axis.text(GAP, top + panel_height / 2, row_names[r], fontsize=FONT_POINTS, va="center")
        for c, panel in enumerate(panels):
            caption = panel.caption
            if caption.text:
                colour = "red" if caption.alert else "black"
                x = left + column_lefts[c]
                axis.text(x, top - 2, caption.text, fontsize=FONT_POINTS, color=colour, va="bottom")
    if colour_bar is not None:
        add_colour_bar(figure, colour_bar, total_width, total_height, int(row_tops[0]))
    return figure


def add_colour_bar(figure: Figure, bar: ColourBar, width: int, height: int, top: int) -> None:
    """A vertical colour bar along the right edge, from below the title to the bottom margin."""
    x = width - COLOUR_BAR_ROOM + GAP
    axis = figure.add_axes(
        (x / width, GAP / height, COLOUR_BAR_WIDTH / width, (height - top - 2 * GAP) / height)
    )
    scale = ScalarMappable(norm=Normalize(bar.low, bar.high), cmap=bar.colormap)
    colour_bar = figure.colorbar(scale, cax=axis)
    colour_bar.ax.tick_params(labelsize=FONT_POINTS)
    colour_bar.set_label(bar.label, fontsize=FONT_POINTS)
