"""The crawler's resolver (``pipeline.fetch.guard``): ``fetch.hosts`` entries, wildcards among them,
and the special-use names that never resolve (RFC 6761).

No test here sends a DNS query: the system resolver the guard wraps is replaced by one that records
every question and answers none, so a name that reached it would show.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.base.schema import ConfigError, validate
from pipeline.config import FetchConfig
from pipeline.fetch import fetch_urls, guard
from pipeline.fetch.guard import AddressPolicy, GuardedResolver, NeverResolves, never_resolves
from tests.helpers import loopback_site


class RecordingResolver:
    """Stands in for aiohttp's system resolver: records each name asked, resolves none."""

    asked: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list:
        RecordingResolver.asked.append(host)
        raise OSError(f"the test resolver was asked for {host}")

    async def close(self) -> None:
        pass


@pytest.fixture
def system_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names the guard asks the system resolver for (none is answered)."""
    RecordingResolver.asked = []
    monkeypatch.setattr(guard, "DefaultResolver", RecordingResolver)
    yield RecordingResolver.asked


def policy(*entries: str) -> AddressPolicy:
    return AddressPolicy.from_config(True, [], FetchConfig(hosts=list(entries)).host_overrides())


def test_exact_entry_wins_over_wildcards_and_longest_suffix_wins() -> None:
    hosts = policy("*.test=127.0.0.1", "*.b.test=127.0.0.2", "a.b.test=127.0.0.3", "Mixed.Test.=::1")
    assert hosts.override("a.b.test") == "127.0.0.3"  # the exact entry
    assert hosts.override("x.b.test") == "127.0.0.2"  # the longest wildcard suffix
    assert hosts.override("y.x.b.test") == "127.0.0.2"  # any depth under it
    assert hosts.override("www.other.test") == "127.0.0.1"
    assert hosts.override("MIXED.test.") == "::1"  # case and a trailing dot do not matter
    assert hosts.override("test") is None  # a wildcard covers the names under it, not the domain
    assert hosts.override("b.test") == "127.0.0.1"
    assert hosts.override("test.example") is None and hosts.override("atest") is None


def test_wildcard_resolves_without_the_system_resolver(system_resolver: list[str]) -> None:
    resolver = GuardedResolver(policy("*.test=127.0.0.1"))
    [result] = asyncio.run(resolver.resolve("www.site-7.test", 8080))
    assert (result["host"], result["port"], result["hostname"]) == ("127.0.0.1", 8080, "www.site-7.test")
    with pytest.raises(OSError, match="the test resolver"):
        asyncio.run(resolver.resolve("elsewhere.example", 80))
    assert system_resolver == ["elsewhere.example"]


@pytest.mark.parametrize("name", ["gone.invalid", "www.gone.INVALID", "invalid", "gone.invalid."])
def test_invalid_names_fail_at_once_without_a_query(system_resolver: list[str], name: str) -> None:
    assert never_resolves(name)
    # Even an override does not make such a name resolve (config refuses to write one, see below).
    resolver = GuardedResolver(AddressPolicy(True, [], {name.lower().rstrip("."): "127.0.0.1"}))
    with pytest.raises(NeverResolves) as caught:
        asyncio.run(resolver.resolve(name, 80))
    assert isinstance(caught.value, OSError) and caught.value.errno == socket.EAI_NONAME
    assert system_resolver == []


def test_other_names_are_not_special() -> None:
    for name in ("invalid.test", "example.com", "localhost", "in-valid", "invalidx"):
        assert not never_resolves(name), name


@pytest.mark.parametrize("entry", ["*.test=127.0.0.1", "*.b.example=::1", "site.test=10.0.0.1"])
def test_config_accepts_names_and_wildcards(entry: str) -> None:
    validate(FetchConfig(hosts=[entry]))


@pytest.mark.parametrize(("entry", "message"), [
    ("*=127.0.0.1", "a wildcard is"),
    ("*.=127.0.0.1", "a wildcard is"),
    ("a.*.test=127.0.0.1", "a wildcard is"),
    ("*.*.test=127.0.0.1", "a wildcard is"),
    ("=127.0.0.1", "no host name"),
    ("*.test=nowhere", "not name=address"),
    ("gone.invalid=127.0.0.1", "never resolve"),
    ("*.invalid=127.0.0.1", "never resolve"),
])
def test_config_refuses_bad_entries(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^hosts\[0\]: .*{message}"):
        validate(FetchConfig(hosts=[entry]))


@pytest.mark.timeout(30)
def test_crawl_with_a_wildcard_and_an_invalid_name(system_resolver: list[str], tmp_path: Path) -> None:
    def respond(path: str, host: str) -> tuple[int, str, bytes]:
        if path == "/robots.txt":
            return 404, "text/plain", b""
        return 200, "text/html", f"<html><body><p>{host}{path}</p></body></html>".encode()

    with loopback_site(respond) as port:
        urls = [f"http://www.one.test:{port}/a", f"http://two.test:{port}/b",
                f"http://gone.invalid:{port}/c"]
        cfg = FetchConfig(allow_private=True, hosts=["*.test=127.0.0.1"], retries=0, per_host_delay_s=0.0)
        rows = fetch_urls(urls, cfg, tmp_path)
    assert [row["reason"] for row in rows] == [None, None, "dns_error"]
    assert rows[2]["status"] is None and rows[2]["elapsed_s"] < 2.0
    assert system_resolver == [], "a name was sent to the system resolver"
