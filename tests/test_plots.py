"""Plots a reader can read: the publish stage's figures and the training run's loss curve.

Manifests are built as the publish stage builds them (its ``funnel`` over stage stats), for a realistic
pipeline, one with many and long drop reasons, and an empty corpus; the figures are checked with
matplotlib's own objects after layout: titles, axis labels, every funnel bar named and counted, no two
texts overlapping, every text inside the figure. ``tests/test_publish.py`` runs them in the stage.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from PIL import Image

import pipeline.plots
import pipeline.publish as publish
from pipeline.plots import figures, plots

PLOT_FILES = ("documents_per_month.png", "top_domains.png", "length_histogram.png", "funnel.png")

REALISTIC_STAGES = {
    "links": {"counts": {"kept": 1_523_301, "duplicate_submission": 31_877, "url_score_below_min": 204_113},
              "submissions": {"kept": 2_140_552, "score_below_min": 45_310_874, "self_post": 12_004_521,
                              "no_url": 1_204, "blocked_domain": 310_442, "bad_created_utc": 3}},
    "fetch": {"counts": {"kept": 1_204_117, "http_404": 121_004, "http_403": 40_332, "timeout": 30_117,
                         "robots_disallowed": 20_871, "too_large": 1_032, "content_type": 15_440,
                         "connection_error": 25_731, "http_500": 3_104, "http_429": 7}},
    "extract": {"counts": {"kept": 903_338, "language": 101_442, "too_few_tokens": 150_316,
                           "quality_repeated_lines": 20_011, "quality_symbols": 9_870,
                           "extract_empty": 19_139, "extract_crash": 1}},
    "dedup": {"counts": {"kept": 801_004, "exact_duplicate": 61_224, "near_duplicate": 41_110}},
}


def many_reasons_stages() -> dict[str, dict[str, Any]]:
    """Dozens of reasons per stage, some with long names, counts from 1 to millions."""
    rng = random.Random(1)
    fetch = {f"http_{code}": rng.randint(1, 90_000) for code in range(400, 430)}
    fetch["connection_refused_by_remote_host_after_tls_handshake_retry_budget_exhausted"] = 2
    extract = {f"quality_filter_number_{i:02d}_rejected_the_main_text_for_its_structure": 10 ** (i % 7)
               for i in range(12)}
    return {
        "links": {"counts": {"kept": 3_000_000, "duplicate_submission": 12},
                  "submissions": {"kept": 3_000_000, "score_below_min": 9_000_000_000}},
        "fetch": {"counts": {"kept": 2_000_000, **fetch}},
        "extract": {"counts": {"kept": 1_500_000, **extract}},
        "dedup": {"counts": {"kept": 1_400_000, "exact_duplicate": 50_000, "near_duplicate": 50_000}},
    }


def manifest_of(stages: dict[str, dict[str, Any]], documents: int, seed: int = 0) -> dict[str, Any]:
    """The parts of a publish manifest the plots draw from, as the stage's driver builds them: the funnel
    by ``publish.funnel`` from the stage stats, months as ``YYYY-MM`` (and ``unknown``), the top domains,
    the length histogram over ``publish.LENGTH_BINS``."""
    rng = random.Random(seed)
    domains = [f"site{i}.example.com" for i in range(200)]
    domains[0] = "longform.investigative-journalism.example.co.uk"  # long names among the top ones
    domains[5] = "very-long-subdomain.news.example.org"
    months = [f"{year}-{month:02d}" for year in range(2006, 2024) for month in range(1, 13)]
    weights = [math.exp(i / 25) for i in range(len(months))]  # a few a month in 2006, thousands by 2023
    by_month = Counter(rng.choices(months, weights, k=documents))
    by_domain = Counter(rng.choices(domains, [1 / (i + 1) for i in range(len(domains))], k=documents))
    if documents:
        by_month["unknown"] = 3
    shares = [10, 20, 25, 20, 10, 5, 1, 0.1, 0.01]  # percent of documents per length bin
    lengths = [int(documents * share / 100) for share in shares]
    lengths[2] += documents - sum(lengths)
    return {
        "documents": documents, "months": dict(sorted(by_month.items())),
        "top_domains": dict(by_domain.most_common(50)),
        "length_histogram": {"bins": publish.LENGTH_BINS[:-1], "documents": lengths},
        "funnel": publish.funnel(stages), "stages": stages,
    }


@pytest.fixture(scope="module", params=["realistic", "many_reasons", "empty"])
def corpus(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """A manifest, the folder ``plots`` wrote its PNGs to, and the figures it saved, by file name."""
    stages, documents = {"realistic": (REALISTIC_STAGES, 20_000),
                         "many_reasons": (many_reasons_stages(), 200_000),
                         "empty": ({"dedup": {"counts": {}}}, 0)}[request.param]
    manifest = manifest_of(stages, documents)
    folder = tmp_path_factory.mktemp(request.param)
    saved: dict[str, Figure] = {}

    def keep(manifest: dict[str, Any]) -> dict[str, Figure]:
        saved.update(figures(manifest))
        return saved

    with pytest.MonkeyPatch.context() as patch:  # layout is what costs: draw each figure once
        patch.setattr(pipeline.plots, "figures", keep)
        plots(manifest, folder)
    return folder, manifest, saved


def texts_of(fig: Figure) -> list[Text]:
    """Every piece of text a reader sees: drawn tick labels, titles, axis labels, annotations, legends."""
    fig.draw_without_rendering()
    texts = []
    for ax in fig.axes:
        for axis, ticklabels in ((ax.xaxis, ax.get_xticklabels(which="both")),
                                 (ax.yaxis, ax.get_yticklabels(which="both"))):
            low, high = sorted(axis.get_view_interval())
            coordinate = 0 if axis is ax.xaxis else 1
            texts += [t for t in ticklabels if low <= t.get_position()[coordinate] <= high]
            texts += [axis.label, axis.get_offset_text()]
        texts += [ax.title, *ax.texts]
        legend = ax.get_legend()
        if legend is not None:
            texts += [*legend.get_texts(), legend.get_title()]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def overlap_px(a: Bbox, b: Bbox) -> float:
    """The smaller side of the intersection of two boxes, in pixels (<= 0: apart or only touching)."""
    return min(min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0))


def within(inner: Bbox, outer: Bbox, tolerance_px: float = 0.5) -> bool:
    return (outer.x0 - tolerance_px <= inner.x0 and inner.x1 <= outer.x1 + tolerance_px
            and outer.y0 - tolerance_px <= inner.y0 and inner.y1 <= outer.y1 + tolerance_px)


def assert_readable(fig: Figure, name: str) -> None:
    """Titled and labelled axes; no two texts overlap; every text inside the figure, every count
    annotation inside its axes."""
    texts = texts_of(fig)
    boxes = [t.get_window_extent() for t in texts]
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel().strip() and ax.get_ylabel().strip(), name
        for text in ax.texts:  # the bar counts
            assert within(text.get_window_extent(), ax.get_window_extent()), (name, text.get_text())
    for i, (text, box) in enumerate(zip(texts, boxes, strict=True)):
        assert within(box, fig.bbox), (name, text.get_text())
        for other, other_box in zip(texts[i + 1:], boxes[i + 1:], strict=True):
            assert overlap_px(box, other_box) <= 0.5, (name, text.get_text(), other.get_text())


def test_plots_are_written_and_open(corpus) -> None:
    folder, _, built = corpus
    assert set(built) == set(PLOT_FILES)
    for name in PLOT_FILES:
        with Image.open(folder / name) as image:
            image.verify()
        with Image.open(folder / name) as image:
            width, height = built[name].get_size_inches() * 100  # plots saves at 100 dpi
            assert image.format == "PNG" and image.size == (round(width), round(height)), name


def test_every_plot_is_titled_labelled_and_uncluttered(corpus) -> None:
    _, _, built = corpus
    for name, fig in built.items():
        assert_readable(fig, name)


def test_funnel_names_and_counts_every_bar(corpus) -> None:
    """Top to bottom, stage by stage: ``stage: kept``, then ``stage: reason`` by count, each bar with
    its exact count at its end."""
    _, manifest, built = corpus
    [ax] = built["funnel.png"].axes
    expected = []
    for row in manifest["funnel"]:
        expected.append((f"{row['stage']}: kept", row["kept"]))
        dropped = sorted(row["dropped"].items(), key=lambda item: (-item[1], item[0]))
        expected += [(f"{row['stage']}: {reason}", n) for reason, n in dropped if n]
    names = {round(t.get_position()[1]): t.get_text() for t in ax.get_yticklabels()}
    counts = {round(t.xy[1]): t.get_text() for t in ax.texts}
    bars = sorted(ax.patches, key=lambda bar: bar.get_y())  # the y axis points down: first bar on top
    assert len(bars) == len(expected)
    for bar, (name, n) in zip(bars, expected, strict=True):
        y = round(bar.get_y() + bar.get_height() / 2)
        assert names[y] == name and round(bar.get_width()) == n
        assert counts[y] == f"{n:,}", name
    if manifest["documents"]:
        assert ax.get_xscale() == "log"  # counts from 1 to millions
    if manifest["stages"] is REALISTIC_STAGES:
        assert {"fetch: http_404", "links (submissions): score_below_min"} <= set(names.values())


def test_month_axis_is_continuous_and_dates_are_readable() -> None:
    from pipeline.plots import months_figure

    fig = months_figure({"2015-01": 5, "2015-04": 7, "unknown": 2})
    [ax] = fig.axes
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[labels.index("2015-01"):labels.index("2015-04") + 1] == [
        "2015-01", "2015-02", "2015-03", "2015-04"]  # the empty months are on the axis
    assert "2 documents without a date" in ax.get_xlabel()
    assert_readable(fig, "months")


def test_loss_plot_is_titled_labelled_and_its_legend_clear_of_the_curves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from train.metrics import plot_losses  # imports torch: only this test pays for it

    records = [{"step": s, "loss": 11 * math.exp(-s / 60) + 3, "lr": 6e-4} for s in range(1, 401)]
    records += [{"step": s, "val_loss": 11 * math.exp(-s / 60) + 3.2} for s in range(0, 401, 50)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    saved: list[Figure] = []
    savefig = Figure.savefig

    def keep(fig: Figure, *args: Any, **kwargs: Any) -> None:
        saved.append(fig)
        savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    path = plot_losses(tmp_path)
    assert path == tmp_path / "loss.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
    [fig] = saved
    [ax] = fig.axes
    assert ax.get_title() and ax.get_xlabel() == "optimizer step"
    assert ax.get_ylabel() == "loss (nats per token)"
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["train", "validation"]
    assert_readable(fig, "loss.png")
    assert overlap_px(legend.get_window_extent(), ax.get_window_extent()) <= 0  # outside the curves' axes
