"""What a benchmark hands the table (``bench/run.py``): measures, run as interleaved pairs.

Each script in bench/ keeps its own command line and adds ``measures(full)``: a context manager
that builds the inputs (pages, dumps, a server, models), yields a list of ``Measure`` and cleans up.
A measure is two callables, ours and the baseline, each doing one timed run on the same inputs and
returning its figure (a rate, or a cost per unit), and the goal its issue set for ours / baseline.

``compare`` runs them in pairs, one after the other (the order swapped every pair: A B, B A, A B, ...),
so load from other work on a shared machine falls on both sides alike, and takes the median of the
per-pair ratios, with their spread (min-max): one run of each side was not enough here, two runs of
the same extract bench once differed by about 20%.

Every script starts by putting the repository first on ``sys.path`` and taking bench/ off it
(``python bench/x.py`` puts bench/ first): bench/tokenize.py must not stand in for the standard
library's ``tokenize``, which many libraries import.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("webtext.bench")


@dataclass(frozen=True)
class Measure:
    """One row of the table: ours beside a baseline on the same inputs."""

    name: str  # what is compared, e.g. "extract, 2 workers"
    unit: str  # of both figures, e.g. "pages/s" or "CPU ms/page"
    ours: Callable[[], float]  # one timed run of ours: its figure
    baseline: Callable[[], float]  # one timed run of the baseline: its figure
    baseline_name: str  # e.g. "trafilatura.extract loop"
    goal: float | None  # the ratio ours / baseline its issue asks for; None: shown, not judged
    higher_is_better: bool = True  # rates: ours / baseline >= goal; costs: ours / baseline <= goal
    issue: int | None = None  # the issue that set the goal

    def met(self, ratio: float) -> bool | None:
        if self.goal is None:
            return None
        return ratio >= self.goal if self.higher_is_better else ratio <= self.goal

    def goal_text(self) -> str:
        if self.goal is None:
            return "-"
        return f"{'>=' if self.higher_is_better else '<='} {self.goal:g}x"


@dataclass(frozen=True)
class Result:
    measure: Measure
    ours: list[float]  # per pair
    baseline: list[float]
    ratios: list[float]  # ours / baseline, per pair

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline)

    @property
    def met(self) -> bool | None:
        return self.measure.met(self.ratio)

    @property
    def straddles(self) -> bool:
        """Whether some pairs meet the goal and others do not: the verdict rests on the median."""
        verdicts = {self.measure.met(r) for r in self.ratios}
        return len(verdicts) > 1


def compare(measure: Measure, pairs: int) -> Result:
    """``pairs`` runs of each side, interleaved (the order swapped every pair)."""
    ours: list[float] = []
    baseline: list[float] = []
    ratios: list[float] = []
    for i in range(pairs):
        sides = [(measure.ours, ours), (measure.baseline, baseline)]
        for run, figures in sides if i % 2 == 0 else sides[::-1]:
            figures.append(run())
        ratios.append(ours[-1] / baseline[-1])
        log.info("%s, pair %d/%d: ours %s %s; %s %s: %.2fx", measure.name, i + 1, pairs, figure(ours[-1]),
                 measure.unit, measure.baseline_name, figure(baseline[-1]), ratios[-1])
    return Result(measure, ours, baseline, ratios)


def figure(value: float) -> str:
    """A rate or cost with three significant digits, thousands separated."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value >= 0.01 else f"{value:.2e}"
