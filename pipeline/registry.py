"""The implemented stages, by name, each as its passes in order. ``config.STAGE_ORDER`` orders stages."""

from __future__ import annotations

from pipeline.extract.stage import ExtractStage
from pipeline.fetch.stage import FetchStage
from pipeline.links.stage import LinksMapStage, LinksReduceStage
from pipeline.runtime import Stage
from pipeline.tokenize import TokenizeStage

STAGES: dict[str, tuple[type[Stage], ...]] = {
    "links": (LinksMapStage, LinksReduceStage),
    "fetch": (FetchStage,),
    "extract": (ExtractStage,),
    "tokenize": (TokenizeStage,),
}


def build(cfg_stages: list[str], cfg: object) -> list[Stage]:
    """The passes of the named stages, in order, built for ``cfg``."""
    return [cls(cfg) for name in cfg_stages for cls in STAGES[name]]
