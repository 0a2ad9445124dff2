"""The test gate: interruption tests (tests/helpers.py ``TaskGate``) act while a known pipeline task,
training step or checkpoint is in progress, instead of betting on how long things take. CI machines
are shared, and a race that a quiet machine wins is lost on a busy one. Unset, as everywhere outside
the tests, the gate costs one environment lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

TEST_GATE_ENV = "WEBTEXT_TASK_GATE"
TEST_GATE_LIMIT_S = 600


class GateTimeout(RuntimeError):
    """Held at the gate past ``TEST_GATE_LIMIT_S``: the test that held it is gone."""


def hold_at_gate(stage: str, index: int) -> None:
    """With ``$WEBTEXT_TASK_GATE`` naming a folder, announce this task there and obey its holds.

    The task touches ``<stage>.<index>.started``; if ``<stage>.hold`` exists it then waits until
    ``<stage>.<index>.go`` appears or the hold is removed (the whole stage released).
    """
    folder = os.environ.get(TEST_GATE_ENV)
    if not folder:
        return
    gate = Path(folder)
    (gate / f"{stage}.{index}.started").touch()
    hold, go = gate / f"{stage}.hold", gate / f"{stage}.{index}.go"
    deadline = time.monotonic() + TEST_GATE_LIMIT_S
    while hold.exists() and not go.exists():
        if time.monotonic() > deadline:  # do not linger forever
            raise GateTimeout(f"task {index} of {stage} held at the test gate {gate} for too long")
        time.sleep(0.005)
