"""Extraction in a child process, one page at a time, with a deadline.

lxml is not thread-safe and a pathological page can keep it busy for minutes, so pages are
extracted in a separate process: a page that takes longer than ``extract.timeout_s`` is abandoned
(``extract_timeout``) and its process replaced; a process that dies (``extract_crash``) is
replaced too. Every ``extract.recycle_docs`` pages the process is restarted, which frees what
trafilatura's caches and lxml's allocator keep, so memory stays flat over millions of pages.

Extraction processes are forked from a fork server that has imported trafilatura and loaded the
tokenizer and the language model once (``pipeline.extract.preload``), so a restart takes
milliseconds rather than the second a fresh interpreter needs. While the child extracts a page, the
parent reads the next one (``IsolatedExtractor.map``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from pipeline.config import ExtractConfig

log = logging.getLogger("webtext.extract")
START_TIMEOUT_S = 120
PRELOAD = "pipeline.extract.preload"
MAIN_PATH_ENV = "WEBTEXT_FORKSERVER_MAIN"
Key = TypeVar("Key")
Result = dict[str, Any] | str


def _serve(conn: Connection, cfg: ExtractConfig) -> None:
    """The child's loop: (body, url, charset) in, a document dict or a reason out."""
    from pipeline.extract.core import document_or_reason, warm_up

    warm_up()  # done already when forked from the preloaded server; a no-op then
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
            answer: Result = document_or_reason(body, url, charset, cfg)
        except Exception as err:  # a page that breaks the extractor must not stop the others
            answer = f"extract_error:{type(err).__name__}"
        conn.send(answer)


def _context() -> Any:
    """The fork server context, preloading the extraction modules (set before the server starts).

    A multiprocessing child re-runs the parent's main module before its target; done in every new
    extraction process, that can cost more than the extraction of a page. So the server loads the
    main module once: by name (``python -m x``) through the preload list, by path (a script)
    through ``MAIN_PATH_ENV``, which ``preload`` reads (Python 3.11's fork server drops the path).
    """
    context = multiprocessing.get_context("forkserver")
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    by_name = [spec.name] if spec is not None and not spec.name.endswith("__main__") else []
    if spec is None and getattr(main, "__file__", None):
        os.environ[MAIN_PATH_ENV] = os.path.normpath(main.__file__)
    context.set_forkserver_preload([PRELOAD, *by_name])
    return context


class IsolatedExtractor:
    """Call it with a page, or ``map`` it over pages: each page's document or the reason there is
    none, within the deadline."""

    def __init__(self, cfg: ExtractConfig) -> None:
        self.cfg = cfg
        self.context = _context()
        self.process: Any = None
        self.conn: Connection | None = None
        self.served = 0
        self.restarts = 0  # processes replaced after a timeout or a crash
        self.start_s = 0.0  # time spent starting processes (the fork server's start included)

    def _start(self) -> None:
        started_at = time.monotonic()
        parent, child = self.context.Pipe()
        self.process = self.context.Process(target=_serve, args=(child, self.cfg), daemon=True)
        self.process.start()
        child.close()
        self.conn, self.served = parent, 0
        # Start-up (imports, models) must not count against the first page's deadline.
        if not parent.poll(START_TIMEOUT_S) or parent.recv() != "ready":
            self._stop(kill=True)
            raise RuntimeError(f"the extraction process did not start within {START_TIMEOUT_S} s")
        self.start_s += time.monotonic() - started_at

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

    def _send(self, body: bytes, url: str, charset: str | None) -> float | None:
        """Hand a page to the child (started or recycled first, which the page's deadline does not
        count); when it was sent, or None when the child is gone."""
        if self.process is None or self.served >= self.cfg.recycle_docs:
            self._stop()
            self._start()
        assert self.conn is not None
        self.served += 1
        sent_at = time.monotonic()
        try:
            self.conn.send((body, url, charset))
            return sent_at
        except (BrokenPipeError, OSError):
            return None

    def _answer(self, url: str, sent_at: float | None) -> Result:
        """The child's answer for the page sent at ``sent_at``, or the reason there is none."""
        reason = "extract_crash"
        if sent_at is not None:
            assert self.conn is not None
            try:
                if self.conn.poll(max(0.0, self.cfg.timeout_s - (time.monotonic() - sent_at))):
                    answer = self.conn.recv()
                    return answer.split(":")[0] if isinstance(answer, str) else answer
                reason = "extract_timeout"
            except (EOFError, OSError):
                pass
        log.warning("%s: %s; replacing the extraction process", url, reason)
        self._stop(kill=True)
        self.restarts += 1
        return reason

    def map(self, pages: Iterable[tuple[Key, bytes, str, str | None]]) -> Iterator[tuple[Key, Result]]:
        """(key, document or reason) for each (key, body, url, charset), in order.

        The child is never left waiting on the parent: as soon as a page's answer arrives the next
        page (read while the child worked) is sent, and only then is the answer yielded and the
        page after read. Each page's deadline runs from its own send.
        """
        items = iter(pages)
        current = next(items, None)
        if current is None:
            return
        sent_at = self._send(*current[1:])
        ahead = next(items, None)
        try:
            while current is not None:
                result = self._answer(current[2], sent_at)
                if ahead is not None:
                    sent_at = self._send(*ahead[1:])
                key, current = current[0], ahead
                ahead = next(items, None) if ahead is not None else None
                yield key, result
        finally:
            if current is not None:  # abandoned with a page in flight: its answer must not linger
                self._stop(kill=True)

    def __call__(self, body: bytes, url: str, charset: str | None) -> Result:
        return next(self.map([(None, body, url, charset)]))[1]

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> IsolatedExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
