"""Extraction in a child process, one page at a time, with a deadline.

lxml is not thread-safe and a pathological page can keep it busy for minutes, so pages are
extracted in a separate process: a page that takes longer than ``extract.timeout_s`` is abandoned
(``extract_timeout``) and its process replaced; a process that dies (``extract_crash``) is
replaced too. Every ``extract.recycle_docs`` pages the process is restarted, which frees what
trafilatura's caches and lxml's allocator keep, so memory stays flat over millions of pages.
"""

from __future__ import annotations

import logging
import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

from pipeline.config import ExtractConfig

log = logging.getLogger("webtext.extract")
START_TIMEOUT_S = 120


def _serve(conn: Connection, cfg: ExtractConfig) -> None:
    """The child's loop: (body, url, charset) in, a document dict or a reason out."""
    from model.tokenizer import gpt2_encoding
    from pipeline.extract.core import document_or_reason, language

    gpt2_encoding()
    language("warm up")  # loads the model, so that no page's deadline pays for it
    conn.send("ready")
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        body, url, charset = request
        try:
            answer: dict[str, Any] | str = document_or_reason(body, url, charset, cfg)
        except Exception as err:  # a page that breaks the extractor must not stop the others
            answer = f"extract_error:{type(err).__name__}"
        conn.send(answer)


class IsolatedExtractor:
    """Call it with a page; get its document or the reason there is none, within the deadline."""

    def __init__(self, cfg: ExtractConfig) -> None:
        self.cfg = cfg
        self.context = multiprocessing.get_context("spawn")
        self.process: Any = None
        self.conn: Connection | None = None
        self.served = 0
        self.restarts = 0

    def _start(self) -> None:
        parent, child = self.context.Pipe()
        self.process = self.context.Process(target=_serve, args=(child, self.cfg), daemon=True)
        self.process.start()
        child.close()
        self.conn, self.served = parent, 0
        # Start-up (imports, models) must not count against the first page's deadline.
        if not parent.poll(START_TIMEOUT_S) or parent.recv() != "ready":
            self._stop(kill=True)
            raise RuntimeError(f"the extraction process did not start within {START_TIMEOUT_S} s")

    def _stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        assert self.conn is not None
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()
        self.process = self.conn = None

    def __call__(self, body: bytes, url: str, charset: str | None) -> dict[str, Any] | str:
        if self.process is None or self.served >= self.cfg.recycle_docs:
            self._stop()
            self._start()
        assert self.conn is not None
        self.served += 1
        try:
            self.conn.send((body, url, charset))
            if self.conn.poll(self.cfg.timeout_s):
                answer = self.conn.recv()
                return answer.split(":")[0] if isinstance(answer, str) else answer
            reason = "extract_timeout"
        except (EOFError, BrokenPipeError, OSError):
            reason = "extract_crash"
        log.warning("%s: %s; replacing the extraction process", url, reason)
        self._stop(kill=True)
        self.restarts += 1
        return reason

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> IsolatedExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
