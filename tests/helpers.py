"""Building configs and stages in-process, for tests that drive the runtime directly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from model.base.gate import TEST_GATE_ENV
from model.base.schema import validate
from model.base.shards import read_shard
from model.base.tokenizer import EOT_ID, gpt2_encoding
from pipeline.config import (
    LocalExecutorConfig,
    PipelineConfig,
    PushshiftSourceConfig,
    TokenizeConfig,
)
from pipeline.executor import LocalExecutor
from pipeline.tokenize import TokenizeStage
from tests.conftest import REPO


def pipeline_config(workdir: Path, workers: int = 2, **tokenize: object) -> PipelineConfig:
    cfg = PipelineConfig(workdir=str(workdir), executor=LocalExecutorConfig(workers=workers),
                         source=PushshiftSourceConfig(), tokenize=TokenizeConfig(**tokenize))
    validate(cfg)
    return cfg


def run_tokenize(workdir: Path, workers: int = 2, **tokenize: object) -> TokenizeStage:
    cfg = pipeline_config(workdir, workers, **tokenize)
    stage = TokenizeStage(cfg)
    LocalExecutor(cfg.executor).run([stage])
    return stage


def token_stream(folder: Path, split: str) -> np.ndarray:
    """All tokens of one split, shards read in name order (task by task)."""
    shards = sorted(folder.glob(f"{split}_*.bin"))
    if not shards:
        return np.zeros(0, dtype=np.uint16)
    return np.concatenate([np.asarray(read_shard(p)) for p in shards])


def documents(stream: np.ndarray) -> list[str]:
    """Decode a token stream back into its documents (each preceded by <|endoftext|>)."""
    assert len(stream) == 0 or stream[0] == EOT_ID, "a stream starts with a separator"
    cuts = np.flatnonzero(stream == EOT_ID).tolist() + [len(stream)]
    enc = gpt2_encoding()
    return [enc.decode(stream[a + 1:b].tolist()) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


class TaskGate:
    """Holds pipeline tasks at their start, so a test acts while a known task is known to be running.

    The runtime obeys it when ``$WEBTEXT_TASK_GATE`` names its folder (``model.base.gate.hold_at_gate``):
    every task announces itself, and a task of a held stage waits until the test releases it.
    """

    def __init__(self, folder: Path, hold: tuple[str, ...] = ()) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for stage in hold:
            (folder / f"{stage}.hold").touch()

    def env(self) -> dict[str, str]:
        return {**os.environ, TEST_GATE_ENV: str(self.folder)}

    def release(self, stage: str, *indices: int) -> None:
        for index in indices:
            (self.folder / f"{stage}.{index}.go").touch()

    def open(self, stage: str) -> None:
        """Release every task of ``stage``, now and later."""
        (self.folder / f"{stage}.hold").unlink(missing_ok=True)

    def started(self, stage: str) -> set[int]:
        """The tasks of ``stage`` that have started (held ones included)."""
        return {int(p.name.split(".")[-2]) for p in self.folder.glob(f"{stage}.*.started")}


def start(command: list[str], gate: TaskGate | None = None) -> subprocess.Popen[str]:
    """Start ``command`` in a session of its own (so its workers can be signalled with it).

    SIGINT is reset to its default there, as for a command run in a terminal: a suite started in
    the background of a script inherits SIGINT ignored, and so would the command.
    """
    return subprocess.Popen(command, cwd=REPO, start_new_session=True, env=gate.env() if gate else None,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(proc: subprocess.Popen[str], ready: Callable[[], bool], limit_s: float = 240) -> None:
    """Wait until ``ready()``: an event the test controls, so how long it takes proves nothing.

    ``limit_s`` only keeps a broken run from hanging the suite; reaching it, or ``proc`` ending
    first, fails the test with the command's output.
    """
    deadline = time.monotonic() + limit_s
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            output = proc.communicate(timeout=60)[0]
            raise AssertionError(f"the awaited state never came (exit status {proc.returncode}):\n"
                                 f"{output[-3000:]}")
        time.sleep(0.01)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_part_way(command: list[str], ready: Callable[[], bool], gate: TaskGate | None = None) -> None:
    """Run ``command`` (with its workers) under ``gate`` and SIGKILL all of it once ``ready()``."""
    proc = start(command, gate)
    wait_for(proc, ready)
    below = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=60)


Responder = Callable[[str, str], tuple[int, str, bytes]]


@contextlib.contextmanager
def loopback_site(respond: Responder) -> Iterator[int]:
    """A threaded HTTP server on 127.0.0.1 whose ``respond(path, host)`` gives (status, type, body).

    Yields the port; stops the server on exit.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            status, kind, body = respond(self.path, self.headers["Host"] or "")
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (its signature)
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def job_state(job: str) -> str:
    """The SLURM job's state while squeue lists it (PENDING, RUNNING, ...); empty once it is gone."""
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def until(condition: Callable[[], bool], log: Path, limit_s: float = 300) -> None:
    """Wait for an event of a job; the limit only keeps a broken job from hanging the suite."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            text = log.read_text() if log.exists() else ""
            raise AssertionError(f"the awaited state never came; job log:\n{text}")
        time.sleep(0.1)


def run_batch_job(argv: list[str], log: Path, limit_s: float = 600, **kwargs) -> tuple[str, int]:
    """``sbatch --parsable ARGS...``, then wait until SLURM no longer lists the job; return its id and
    exit status. (``sbatch --wait`` polls at 2, 4, 8, ... s: up to half a minute after the job ends.)"""
    submitted = subprocess.run(["sbatch", "--parsable", *argv], capture_output=True, text=True, timeout=120,
                               **kwargs)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    try:
        until(lambda: job_state(job) == "", log, limit_s)
    finally:
        subprocess.run(["scancel", job], capture_output=True, timeout=60)  # (a no-op once it ended)
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True,
                           timeout=60).stdout
    status = int(shown.split("ExitCode=")[1].split(":")[0]) if "ExitCode=" in shown else -1
    return job, status
