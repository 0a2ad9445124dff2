"""Run a command and measure its whole process tree: wall time, CPU seconds, the largest resident set.

    python -m bench.treeusage OUT.json -- COMMAND [ARGS...]

The command's processes may start others that outlive their parents (a process pool's workers, the
fork server of the extraction processes and its children): this process makes itself their
"subreaper" (Linux ``PR_SET_CHILD_SUBREAPER``), so every orphan of the tree is re-parented here and
reaped here, and ``getrusage(RUSAGE_CHILDREN)`` then holds the CPU time of every process of the tree
and the peak resident set size of the largest one. Writes ``{"rc", "wall_s", "cpu_s", "peak_rss_mb"}``
to OUT.json and exits with the command's status. Run one per measurement: ``ru_maxrss`` is a maximum
over the life of this process.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
ORPHANS_GRACE_S = 60.0  # how long processes left behind by the command may take to end


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _children() -> list[int]:
    """Pids of this process's live children (from /proc; orphans re-parented here included)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.append(int(entry))
    return found


def _reap_orphans() -> None:
    """Wait for every process the command left behind; after the grace period, end them."""
    deadline = time.monotonic() + ORPHANS_GRACE_S
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            continue
        if time.monotonic() > deadline:
            for child in _children():
                os.kill(child, signal.SIGKILL)
        time.sleep(0.05)


def measure(command: list[str]) -> dict[str, float]:
    _become_subreaper()
    start = time.monotonic()
    rc = subprocess.call(command)
    wall = time.monotonic() - start
    _reap_orphans()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"rc": rc, "wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit(__doc__)
    result = measure(sys.argv[3:])
    Path(sys.argv[1]).write_text(json.dumps(result))
    sys.exit(int(result["rc"]))


if __name__ == "__main__":
    main()
