"""Every stage, by name, as its passes in order, in ``config.STAGE_ORDER``'s data-flow order."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pipeline.config import STAGE_ORDER
from pipeline.dedup.stage import dedup_stages
from pipeline.extract.stage import ExtractStage
from pipeline.fetch.ccindex import ccindex_stages
from pipeline.fetch.stage import FetchStage
from pipeline.links.stage import LinksMapStage, LinksReduceStage
from pipeline.overlap.stage import OverlapStage
from pipeline.publish import PublishStage
from pipeline.runtime import Stage
from pipeline.tokenize import TokenizeStage

# A stage's passes: each a Stage class, or a function giving passes (when their number is configured).
STAGES: dict[str, tuple[type[Stage] | Callable[[object], Iterable[Stage]], ...]] = {
    "links": (LinksMapStage, LinksReduceStage),
    "fetch": (ccindex_stages, FetchStage),  # the join with Common Crawl's index, when configured
    "extract": (ExtractStage,),
    "dedup": (dedup_stages,),
    "publish": (PublishStage,),
    "overlap": (OverlapStage,),
    "tokenize": (TokenizeStage,),
}
if tuple(STAGES) != STAGE_ORDER:  # the config validates names against STAGE_ORDER without importing us
    raise ImportError(f"pipeline.registry.STAGES {tuple(STAGES)} and config.STAGE_ORDER {STAGE_ORDER} differ")


def build(cfg_stages: list[str], cfg: object) -> list[Stage]:
    """The passes of the named stages, in order, built for ``cfg``."""
    passes: list[Stage] = []
    for name in cfg_stages:
        for make in STAGES[name]:
            if isinstance(make, type):
                passes.append(make(cfg))
            else:
                passes.extend(make(cfg))
    return passes
