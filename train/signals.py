"""Stop signals: finish the step, checkpoint, exit with 128 + the signal's number."""

from __future__ import annotations

import signal


class StopRequested:
    """SIGUSR1, SIGUSR2 or SIGTERM: finish the step, checkpoint, exit with 128 + the signal's number.

    USR1 is what slurm/train.sbatch forwards before the time limit; USR2 is what submitit (the sweep
    launcher) asks SLURM to send; TERM comes with preemption and scancel. The trainer takes them all
    while it trains, so no launcher's own handler ends the process with the steps since the last
    periodic checkpoint lost.
    """

    SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum = 0
        self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def hand_over(self, signum: int) -> None:
        """After the checkpoint: in a submitit job (a sweep's), requeue it the way submitit would have
        (its handler calls the launcher's ``checkpoint`` and ``scontrol requeue``, then exits on the
        first task; the others exit here), so the requeued job resumes from this step's checkpoint.
        TERM is SLURM's own preemption or cancel: SLURM requeues or ends the job, nothing to ask."""
        requeue = next((h for h in self.previous.values()
                        if getattr(h, "__name__", "") == "checkpoint_and_try_requeue"), None)
        if requeue is None or signum == signal.SIGTERM:
            return
        requeue(signum, None)  # the first task exits in there once the job is requeued
        raise SystemExit(128 + signum)  # the other tasks: no result for the sweep, the job goes on

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum
