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
from typing import ParamSpec

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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


P = ParamSpec("P")


def never_raises(what: str, out_arg: int) -> Callable[[Callable[P, Path]], Callable[P, Path]]:
    """Turn an unexpected failure into a placeholder figure: a report with one broken
    picture is more useful than no report. The exception is logged with its traceback.
    ``out_arg`` is the position of the ``out_png`` parameter."""

    def wrap(func: Callable[P, Path]) -> Callable[P, Path]:
        @functools.wraps(func)
        def inner(*args: P.args, **kwargs: P.kwargs) -> Path:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                if STRICT:
                    raise
                log.exception("drawing the %s failed", what)
                out = kwargs["out_png"] if "out_png" in kwargs else args[out_arg]
                return no_data(out, what, f"could not draw: {type(exc).__name__}: {exc}")

        return inner

    return wrap
