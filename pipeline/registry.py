"""The implemented stages, by name. ``config.STAGE_ORDER`` gives their order in the data flow."""

from __future__ import annotations

from pipeline.runtime import Stage
from pipeline.tokenize import TokenizeStage

STAGES: dict[str, type[Stage]] = {
    TokenizeStage.name: TokenizeStage,
}
