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

from model.tokenizer import EOT_ID, gpt2_encoding
from pipeline.config import (
    LocalExecutorConfig,
    PipelineConfig,
    PushshiftSourceConfig,
    TokenizeConfig,
)
from pipeline.executor import LocalExecutor
from pipeline.schema import validate
from pipeline.tokenize import TokenizeStage, read_shard
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


def kill_part_way(command: list[str], ready: Callable[[], bool], timeout_s: float = 120) -> None:
    """Run ``command`` (with its workers) and SIGKILL the whole process group once ``ready()``."""
    proc = subprocess.Popen(command, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while not ready() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


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
