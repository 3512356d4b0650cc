"""Shared matplotlib plumbing: headless figures, saving, the "no data" placeholder.

Figures are built with ``matplotlib.figure.Figure`` directly rather than ``pyplot``: no
global figure registry (nothing to leak or close across hundreds of plots in a batch),
no GUI backend selection, and safe to call from threads. Saving goes through the Agg
canvas explicitly so a display is never needed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

log = logging.getLogger(__name__)

DPI = 100
# Tests flip this so that a drawing bug fails loudly instead of becoming a placeholder.
STRICT = False

TRUST_COLOURS = {
    "trusted": ("#d9f0d3", "#4d9a4d"),  # (fill, edge) green-ish
    "dmz": ("#fde4b0", "#d08c00"),  # amber
    "untrusted": ("#f6c9c4", "#c0392b"),  # red-ish
}
UNKNOWN_TRUST = ("#e6e6e6", "#808080")
STREAM_COLOURS = {"down": "#1f77b4", "up": "#e6550d"}
PALETTE = (
    "#1f77b4",
    "#2ca02c",
    "#9467bd",
    "#d62728",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#ff7f0e",
)


def new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out_png: Path | str) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=DPI, facecolor="white")
    fig.clear()  # free the artists now rather than at garbage collection
    return out


def no_data(out_png: Path | str, title: str, message: str = "no data") -> Path:
    fig = new_figure(6, 2.2)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.text(0.5, 0.68, title, ha="center", va="center", fontsize=11, weight="bold", wrap=True)
    ax.text(0.5, 0.38, message, ha="center", va="center", fontsize=10, color="#666666")
    return save(fig, out_png)


class NoData(Exception):
    """A figure that cannot be drawn from this run's data: ``title`` and why not."""

    def __init__(self, title: str, message: str) -> None:
        super().__init__(message)
        self.title, self.message = title, message


def text_boxes(fig: Figure) -> list[tuple[Any, Bbox]]:
    """Every visible, non-empty text of ``fig`` (tick labels included) with its extent on
    the canvas as the renderer lays it out (bounding box included), for geometry checks."""
    fig.canvas.draw()  # places the boxes drawn around texts
    renderer = fig.canvas.get_renderer()
    # an axis keeps label objects for ticks outside its view too: only the drawn ones count
    ticks, drawn = set(), set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                ticks.update({id(tick.label1), id(tick.label2)})
            if ax.axison and axis.get_visible():
                for tick in axis._update_ticks():  # what Axis.draw draws
                    drawn.update({id(tick.label1), id(tick.label2)})
    out = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        if id(text) in ticks and id(text) not in drawn:
            continue
        if text.axes is not None and not text.axes.get_visible():
            continue
        box = text.get_window_extent(renderer)
        patch = text.get_bbox_patch()
        if patch is not None:
            box = Bbox.union([box, patch.get_window_extent(renderer)])
        out.append((text, box))
    return out


def overlapping_texts(fig: Figure, tolerance_px: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of texts of ``fig`` whose boxes overlap (by more than ``tolerance_px``)."""
    boxes = text_boxes(fig)
    pairs = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            w = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            h = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            if w > tolerance_px and h > tolerance_px:
                pairs.append((a.get_text(), b.get_text()))
    return pairs


def lines_through_texts(fig: Figure) -> list[str]:
    """Texts of ``fig`` that a drawn line (not a marker) passes through."""
    boxes = text_boxes(fig)
    hit = []
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_linestyle() in ("None", "", " ") or len(line.get_xdata()) < 2:
                continue
            path = line.get_transform().transform_path(line.get_path())
            for text, box in boxes:
                if path.intersects_bbox(box, filled=False):
                    hit.append(text.get_text())
    return hit


P = ParamSpec("P")


def never_raises(what: str, out_arg: int) -> Callable[[Callable[P, Path]], Callable[P, Path]]:
    """Turn an unexpected failure into a placeholder figure: a report with one broken
    picture is more useful than no report. The exception is logged with its traceback.
    ``out_arg`` is the position of the ``out_png`` parameter."""

    def wrap(func: Callable[P, Path]) -> Callable[P, Path]:
        @functools.wraps(func)
        def inner(*args: P.args, **kwargs: P.kwargs) -> Path:
            out = kwargs["out_png"] if "out_png" in kwargs else args[out_arg]
            try:
                return func(*args, **kwargs)
            except NoData as empty:
                return no_data(out, empty.title, empty.message)  # type: ignore[arg-type]
            except Exception as exc:
                if STRICT:
                    raise
                log.exception("drawing the %s failed", what)
                return no_data(out, what, f"could not draw: {type(exc).__name__}: {exc}")

        return inner

    return wrap
