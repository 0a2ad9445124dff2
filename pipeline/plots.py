"""The publish stage's plots, drawn from its manifest (``corpus/manifest.json``), saved beside the card.

``documents_per_month.png``, ``top_domains.png``, ``length_histogram.png`` and ``funnel.png``. Each has
a builder that returns its matplotlib ``Figure`` (the tests inspect them); ``plots`` saves them all.
Every plot has a title, axis labels with units, and counts on a log axis when they span orders of
magnitude; horizontal bars carry their exact counts, and figures grow with their labels so that no
two labels overlap. matplotlib (Agg, no pyplot) is imported inside the builders: the stage's workers
import this module's caller but never draw.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.base.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure
    from matplotlib.text import Text

LOG_SPAN = 100  # a count axis is logarithmic when its largest positive count is this many times its smallest
FONT_PT = 8  # tick labels and bar counts
BAR_IN = 0.25  # height of one horizontal bar (room for an 8 pt label and a gap)
CHAR_IN = 0.075  # width of one label character at FONT_PT, a little generous (DejaVu Sans)
TOP_DOMAINS_SHOWN = 30
KEPT_COLOR, DROPPED_COLOR = "tab:blue", "tab:orange"
FUNNEL_UNITS = "count: submissions (links (submissions)), URLs (links, fetch), documents (extract, dedup)"


def plots(manifest: dict[str, Any], folder: Path) -> None:
    """PNG plots beside the card: documents per month, top domains, length histogram, funnel."""
    for name, fig in figures(manifest).items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        atomic_write(folder / name, buffer.getvalue())


def figures(manifest: dict[str, Any]) -> dict[str, Figure]:
    """Every plot of the manifest, by the file name it is saved under."""
    return {
        "documents_per_month.png": months_figure(manifest["months"]),
        "top_domains.png": domains_figure(manifest["top_domains"]),
        "length_histogram.png": length_figure(manifest["length_histogram"]),
        "funnel.png": funnel_figure(manifest["funnel"]),
    }


def months_figure(months: dict[str, int]) -> Figure:
    """Documents per month of first submission, on a continuous month axis (empty months show as gaps)."""
    dated: dict[int, int] = {}
    undated = 0
    for key, n in months.items():
        index = _month_index(key)
        if index is None:
            undated += n
        else:
            dated[index] = dated.get(index, 0) + n
    fig, ax = _new_figure(10, 4.5)
    if dated:
        ax.bar(list(dated), list(dated.values()), width=0.8, color=KEPT_COLOR)
        pad = max(1, (12 - (max(dated) - min(dated))) // 2)  # a year at least: a month is not a wall
        first, last = min(dated) - pad, max(dated) + pad
        ax.set_xlim(first - 0.5, last + 0.5)
        ax.set_xticks(*_month_ticks(first, last, axis_in=10 - 1.2))
        _count_axis(ax, ax.yaxis, list(dated.values()))
    else:
        _no_data(ax)
    ax.tick_params(labelsize=FONT_PT)
    ax.set_title("Documents per month")
    xlabel = "month of first Reddit submission (UTC)"
    if undated:
        xlabel += f"; {undated:,} documents without a date are not shown"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("documents")
    return fig


def domains_figure(top_domains: dict[str, int], shown: int = TOP_DOMAINS_SHOWN) -> Figure:
    """The ``shown`` domains with the most documents, largest on top, each with its count."""
    top = list(top_domains.items())[:shown]
    longest = max((len(domain) for domain, _ in top), default=10)
    fig, ax = _new_figure(max(8.0, 4.5 + CHAR_IN * longest), 1.5 + BAR_IN * max(len(top), 4))
    if top:
        _bars(fig, ax, [domain for domain, _ in top], [n for _, n in top], [KEPT_COLOR] * len(top))
    else:
        _no_data(ax)
    ax.set_title(f"Top {len(top)} domains by documents")
    ax.set_xlabel("documents")
    ax.set_ylabel("domain")
    return fig


def length_figure(histogram: dict[str, list]) -> Figure:
    """Documents per length bin (``bins`` are lower edges, in characters), each bar with its count."""
    counts = histogram["documents"]
    labels = _bin_labels(histogram["bins"])
    fig, ax = _new_figure(max(8.0, 1.5 + 0.9 * len(labels)), 4.5)
    positions = list(range(len(labels)))
    ax.bar(positions, counts, color=KEPT_COLOR)
    ax.set_xticks(positions, labels)
    ax.tick_params(labelsize=FONT_PT)
    log = _count_axis(ax, ax.yaxis, counts)
    if sum(counts):
        _fit_labels(fig, ax, _label_bars(ax, positions, counts, log, horizontal=False), horizontal=False)
    else:
        _no_data(ax)
    ax.set_title("Document length")
    ax.set_xlabel("characters per document")
    ax.set_ylabel("documents")
    return fig


def funnel_figure(rows: list[dict[str, Any]]) -> Figure:
    """Per stage (in pipeline order): what it kept, then what it dropped by reason, largest first.

    Every bar is labelled ``stage: reason`` (``fetch: kept``, ``fetch: http_404``) and carries its count;
    thin lines separate the stages. Reasons with a zero count are left out.
    """
    labels: list[str] = []
    counts: list[int] = []
    colors: list[str] = []
    starts: list[int] = []  # the first bar of each stage after the first
    for row in rows:
        if labels:
            starts.append(len(labels))
        labels.append(f"{row['stage']}: kept")
        counts.append(row["kept"])
        colors.append(KEPT_COLOR)
        for reason, n in sorted(row["dropped"].items(), key=lambda item: (-item[1], item[0])):
            if n > 0:
                labels.append(f"{row['stage']}: {reason}")
                counts.append(n)
                colors.append(DROPPED_COLOR)
    longest = max((len(label) for label in labels), default=10)
    fig, ax = _new_figure(max(10.0, 6.5 + CHAR_IN * longest), 1.6 + BAR_IN * max(len(labels), 4))
    if labels:
        for start in starts:
            ax.axhline(start - 0.5, color="0.8", linewidth=0.8)
        from matplotlib.patches import Patch

        kinds = [Patch(color=KEPT_COLOR, label="kept"), Patch(color=DROPPED_COLOR, label="dropped")]
        ax.legend(handles=kinds, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
                  fontsize=FONT_PT)  # beside the axes, clear of the bars
        _bars(fig, ax, labels, counts, colors)
    else:
        _no_data(ax)
    ax.set_title("Funnel: what each stage kept and dropped, by reason")
    ax.set_xlabel(FUNNEL_UNITS)
    ax.set_ylabel("stage: reason")
    return fig


# --- drawing helpers ---------------------------------------------------------------------------------


def _new_figure(width_in: float, height_in: float) -> tuple[Figure, Axes]:
    """A figure on the Agg canvas (no pyplot: nothing global, nothing to close) with one axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _bars(fig: Figure, ax: Axes, labels: list[str], counts: list[int], colors: list[str]) -> None:
    """Horizontal bars from top to bottom, named on the left, their exact counts at their ends."""
    positions = list(range(len(labels)))
    ax.barh(positions, counts, color=colors)
    ax.set_yticks(positions, labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first bar on top
    ax.tick_params(labelsize=FONT_PT)
    log = _count_axis(ax, ax.xaxis, counts)
    _fit_labels(fig, ax, _label_bars(ax, positions, counts, log, horizontal=True), horizontal=True)


def _count_axis(ax: Axes, axis: Axis, counts: list[int]) -> bool:
    """Make ``axis`` a count axis: logarithmic when the counts span LOG_SPAN or more, short tick labels
    (``10k``, ``2.5M``). Whether it is logarithmic."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    positive = [n for n in counts if n > 0]
    log = bool(positive) and max(positive) >= LOG_SPAN * min(positive)
    horizontal = axis is ax.xaxis
    if log:
        (ax.set_xscale if horizontal else ax.set_yscale)("log")
        # integer counts: from 0.5 a count of 1 still shows as a bar
        (ax.set_xlim if horizontal else ax.set_ylim)(0.5, max(positive) * 1.5)
        axis.set_minor_formatter(NullFormatter())
    else:
        axis.set_major_locator(MaxNLocator(integer=True))
        if not positive:  # all zero: an axis from 0 to 1 rather than matplotlib's -0.05 to 0.05
            (ax.set_xlim if horizontal else ax.set_ylim)(0, 1)
    axis.set_major_formatter(FuncFormatter(lambda value, _: _compact(value)))
    return log


def _label_bars(ax: Axes, positions: list[int], counts: list[int], log: bool, horizontal: bool) -> list[Text]:
    """Each bar's exact count just past its end (from the axis' lower limit where a log bar is empty)."""
    floor = (ax.get_xlim() if horizontal else ax.get_ylim())[0] if log else 0
    texts: list[Text] = []
    for position, n in zip(positions, counts, strict=True):
        end = max(n, floor)
        if horizontal:
            texts.append(ax.annotate(f"{n:,}", (end, position), xytext=(3, 0), textcoords="offset points",
                                     ha="left", va="center", fontsize=FONT_PT))
        else:
            texts.append(ax.annotate(f"{n:,}", (position, end), xytext=(0, 2), textcoords="offset points",
                                     ha="center", va="bottom", fontsize=FONT_PT))
    for text in texts:  # placed inside the axes by _fit_labels: the layout need not make room for them
        text.set_in_layout(False)
    return texts


def _fit_labels(fig: Figure, ax: Axes, texts: list[Text], horizontal: bool, pad_px: float = 6) -> None:
    """Extend the count axis until every bar's count label lies inside the axes.

    A label has a fixed size and offset in points but is anchored at its bar's end, which moves towards
    the axis origin, in proportion, as the axis grows. Growing it may change the tick labels and hence
    the layout, so measure again (twice is the rule).
    """
    axis = ax.xaxis if horizontal else ax.yaxis
    for _ in range(4):
        fig.draw_without_rendering()  # runs the layout and places the texts
        box = ax.get_window_extent()
        origin, length = (box.x0, box.width) if horizontal else (box.y0, box.height)
        grow = 1.0
        for text in texts:
            extent = text.get_window_extent()
            anchor = ax.transData.transform(text.xy)[0 if horizontal else 1] - origin  # the bar's end
            tail = (extent.x1 if horizontal else extent.y1) - origin - anchor  # offset and label
            if anchor + tail > length - pad_px / 2:  # aim at pad_px, accept half: the layout may shift a bit
                room = length - pad_px - tail
                grow = max(grow, anchor / room if room > 0 else 100.0)
        if grow <= 1.0:
            return
        scale = axis.get_transform()
        low, high = ax.get_xlim() if horizontal else ax.get_ylim()
        scaled_low, scaled_high = scale.transform([low, high])
        high = float(scale.inverted().transform(scaled_low + (scaled_high - scaled_low) * min(grow, 100.0)))
        (ax.set_xlim if horizontal else ax.set_ylim)(low, high)


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no documents", transform=ax.transAxes, ha="center", va="center", color="0.4")


def _month_index(month: str) -> int | None:
    """``"2015-03"`` -> months since year 0 (2015 * 12 + 2); None for ``"unknown"`` or anything else."""
    year, _, number = month.partition("-")
    if not (year.isdigit() and number.isdigit() and 1 <= int(number) <= 12):
        return None
    return int(year) * 12 + int(number) - 1


def _month_ticks(first: int, last: int, axis_in: float) -> tuple[list[int], list[str]]:
    """Tick positions and labels for months ``first..last``: every month, quarter, year, ... whichever
    is the finest whose labels fit side by side in ``axis_in`` inches (``2015-03`` or, yearly, ``2015``)."""
    for step in (1, 2, 3, 6, 12, 24, 60, 120, 600):
        ticks = [m for m in range(first, last + 1) if m % step == 0] or [first]
        labels = [f"{m // 12}" if step >= 12 else f"{m // 12}-{m % 12 + 1:02d}" for m in ticks]
        label_in = CHAR_IN * len(labels[0]) + 0.2
        if len(ticks) * label_in <= axis_in:
            break
    return ticks, labels


def _bin_labels(bins: list[float]) -> list[str]:
    """``[0, 500, 1000]`` (lower edges) -> ``["0–500", "500–1k", "≥1k"]``."""
    labels = [f"{_compact(low)}–{_compact(high)}" for low, high in zip(bins, bins[1:], strict=False)]
    return [*labels, f"≥{_compact(bins[-1])}"] if bins else []


def _compact(value: float) -> str:
    """A count as a short tick label: 950, 12k, 2.5M, 40B."""
    for divisor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= divisor:
            return f"{value / divisor:g}{suffix}"
    return f"{value:g}"
