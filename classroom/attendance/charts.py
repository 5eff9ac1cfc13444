"""Report charts drawn on the server as SVG with matplotlib.

Why matplotlib: it is the long-maintained standard, needs nothing online, and
its SVG backend writes every glyph as a path, so a chart with Chinese labels
looks the same on a room PC without CJK fonts (the server's Noto Sans CJK,
from Debian's fonts-noto-cjk, is drawn into the file). Only the object API is
used (``Figure``, never pyplot's global figures).

matplotlib is imported on the first chart (about 1 s and 40 MB that the relay
does not need otherwise), and charts are drawn one at a time in a worker
thread (its font and text caches are not thread-safe), off the event loop.
Labels are plain text: ``text.parse_math`` is off, so a site named "$x$" is
drawn as written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

CJK_FONTS = ["Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "DejaVu Sans"]
MAX_BARS = 40
ACCENT = "#a3191e"  # the console's red
MUTED = "#8a93a6"
# Clock-time tick steps for the timeline, in minutes.
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
MAX_TICKS = 9

_lock = threading.Lock()
T = TypeVar("T")


async def render(draw: Callable[..., bytes], *args: Any) -> bytes:
    """Run a drawing function off the event loop, one chart at a time."""
    return await asyncio.to_thread(_locked, draw, *args)


def _locked(draw: Callable[..., T], *args: Any) -> T:
    with _lock:
        return draw(*args)


def _style() -> Any:
    """matplotlib settings for one chart (inside the lock)."""
    import matplotlib

    return matplotlib.rc_context({
        "font.family": "sans-serif",
        "font.sans-serif": CJK_FONTS,
        "font.size": 10,
        "text.parse_math": False,
        "svg.fonttype": "path",
        "svg.hashsalt": "zhixing",  # the same chart gives the same bytes
        "axes.spines.top": False,
        "axes.spines.right": False,
    })


def _svg(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def bar_chart(labels: Sequence[str], values: Sequence[int], title: str, axis_label: str,
              others_label: str, empty_label: str) -> bytes:
    """Horizontal bars, largest first (long Chinese names read across); past
    MAX_BARS the rest are summed into one bar."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    pairs = list(zip(labels, values, strict=True))
    if len(pairs) > MAX_BARS:
        rest = pairs[MAX_BARS - 1:]
        others = (others_label.format(count=len(rest)), sum(v for _, v in rest))
        pairs = [*pairs[:MAX_BARS - 1], others]
    with _style():
        height = 1.6 + 0.36 * max(1, len(pairs))
        figure = Figure(figsize=(7.5, height), layout="constrained")
        axes = figure.add_subplot()
        axes.set_title(title, loc="left", fontsize=12)
        if not pairs:
            axes.text(0.5, 0.5, empty_label, ha="center", va="center", color=MUTED,
                      transform=axes.transAxes)
            axes.set_axis_off()
            return _svg(figure)
        names = [name for name, _ in pairs][::-1]
        numbers = [value for _, value in pairs][::-1]
        positions = range(len(pairs))
        bars = axes.barh(positions, numbers, color=ACCENT, height=0.6)
        axes.set_yticks(list(positions), names)
        axes.bar_label(bars, padding=3, fontsize=9)
        axes.set_xlabel(axis_label)
        axes.set_xlim(0, max(max(numbers), 1) * 1.15)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(axis="x", color="#e3e6ec")
        axes.set_axisbelow(True)
        return _svg(figure)


def timeline_chart(steps: Sequence[tuple[float, int]], window: tuple[float, float] | None,
                   invited: int, tz: dt.tzinfo, labels: dict[str, str]) -> bytes:
    """Rooms connected over the session: a step line, the window shaded, the
    number of invited rooms as a dashed ceiling; clock times in ``tz``.
    ``labels``: title, axis, invited ({count}), empty."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    with _style():
        figure = Figure(figsize=(7.5, 3.2), layout="constrained")
        axes = figure.add_subplot()
        axes.set_title(labels["title"], loc="left", fontsize=12)
        if window is None and not steps:
            axes.text(0.5, 0.5, labels["empty"], ha="center", va="center", color=MUTED,
                      transform=axes.transAxes)
            axes.set_axis_off()
            return _svg(figure)
        times = [t for t, _ in steps] + (list(window) if window is not None else [])
        start, end = min(times), max(times)
        end = max(end, start + 60)
        points = [(start, 0), *steps, (end, steps[-1][1] if steps else 0)]
        xs = [t for t, _ in points]
        ys = [c for _, c in points]
        axes.step(xs, ys, where="post", color=ACCENT, linewidth=1.8)
        axes.fill_between(xs, ys, step="post", color=ACCENT, alpha=0.12)
        if window is not None:
            axes.axvspan(window[0], window[1], color="#eef0f4", zorder=0)
        if invited:
            axes.axhline(invited, color=MUTED, linestyle="--", linewidth=1)
            axes.annotate(labels["invited"].format(count=invited), (0, invited),
                          xycoords=("axes fraction", "data"), xytext=(4, 3),
                          textcoords="offset points", color=MUTED, fontsize=9)
        axes.set_ylim(0, max(invited, *ys, 1) * 1.15)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(labels["axis"])
        ticks = clock_ticks(start, end, tz)
        axes.set_xticks([t for t, _ in ticks], [label for _, label in ticks])
        axes.set_xlim(start, end)
        axes.grid(axis="y", color="#e3e6ec")
        axes.set_axisbelow(True)
        return _svg(figure)


def clock_ticks(start: float, end: float, tz: dt.tzinfo) -> list[tuple[float, str]]:
    """Round clock times (every 5, 10, 15, 30 … minutes in ``tz``) between
    ``start`` and ``end``, at most MAX_TICKS of them, labelled HH:MM."""
    span = max(end - start, 1.0)
    step = next((m * 60 for m in TICK_STEPS if span / (m * 60) <= MAX_TICKS - 1),
                TICK_STEPS[-1] * 60)
    offset = dt.datetime.fromtimestamp(start, tz).utcoffset() or dt.timedelta()
    local = start + offset.total_seconds()
    first = (local // step + (local % step > 0)) * step - offset.total_seconds()
    ticks = []
    tick = first
    while tick <= end:
        ticks.append((tick, dt.datetime.fromtimestamp(tick, tz).strftime("%H:%M")))
        tick += step
    return ticks
