"""Vault change detection without Vault's help: KV metadata polling and a Vault Agent file.

Both are driven by the controller's view of the credentials (``sources()``: which credential
reads which ``mount/path`` and which version it holds) and report through ``queue(key, why)``.
Nothing here talks to Vault directly: polling calls ``current_version(mount, path)``, the
cheap KV metadata read, so this package stays independent of the Vault adapter.

The **agent file** is any file a Vault Agent template renders (``settings.triggers.agent_file``).
When its content changes, every line of the form ``mount/path`` (or ``mount/path@version``;
blank lines and ``#`` comments ignored) that names a credential's source queues those
credentials; when no line names a known source (the file holds, say, the rendered secret itself),
every source's metadata is checked as in one poll cycle without a budget. The file's content
is hashed, never logged.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Source(Generic[K]):
    """A credential reading Vault ``mount/path`` and holding ``current`` (None: nothing yet)."""

    key: K
    mount: str
    path: str
    current: int | None


def source_name(mount: str, path: str) -> str:
    return f"{mount.strip('/')}/{path.strip('/')}"


class Poller(Generic[K]):
    """Compares KV ``current_version`` with what each credential holds, within a budget."""

    def __init__(
        self,
        sources: Callable[[], Iterable[Source[K]]],
        current_version: Callable[[str, str], int],
        queue: Callable[[K, str], None],
        *,
        budget: int = 100,
        spread: float | None = None,
        unavailable: Callable[[Exception], bool] = lambda exc: False,
    ) -> None:
        self.sources = sources
        # an error that says Vault itself is down ends the cycle: the next path would only
        # fail the same way, a budget of requests per cycle into an outage
        self.unavailable = unavailable
        # a safety poll: each cycle checks this fraction of the sources (at least one, at most
        # ``budget``), so that every source is checked once per period
        self.spread = spread
        self.current_version = current_version
        self.queue = queue
        self.budget = budget
        self._cursor = 0
        self.requests = 0
        self.errors = 0
        self.cut_short = 0

    def cycle(
        self,
        *,
        unlimited: bool = False,
        trigger: str = "poll",
        skip: Callable[[K], bool] | None = None,
    ) -> list[K]:
        """One round: at most ``budget`` metadata reads (``unlimited``: every source), continuing
        where the last round stopped. Sources whose key ``skip`` names are not read (a path
        all of whose sources are skipped costs nothing).

        Returns the keys queued.
        """
        by_path: dict[tuple[str, str], list[Source[K]]] = {}
        for source in self.sources():
            if skip is not None and skip(source.key):
                continue
            by_path.setdefault((source.mount, source.path), []).append(source)
        paths = sorted(by_path)
        if not paths:
            return []
        limit = len(paths) if unlimited else min(self.budget, len(paths))
        if self.spread is not None and not unlimited:
            limit = min(limit, max(1, math.ceil(len(paths) * self.spread)))
        start = self._cursor % len(paths)
        queued: list[K] = []
        for offset in range(limit):
            mount, path = paths[(start + offset) % len(paths)]
            self.requests += 1
            try:
                version = self.current_version(mount, path)
            except Exception as exc:  # a bad path must not stop the cycle; the reconcile says why
                self.errors += 1
                if self.unavailable(exc):
                    self.cut_short += 1
                    log.info("poll cycle stopped: %s", exc)
                    self._cursor = (start + offset) % len(paths)  # this path first, next time
                    return queued
                log.debug("poll of %s failed: %s", source_name(mount, path), exc)
                continue
            for source in by_path[(mount, path)]:
                if source.current != version:
                    self.queue(source.key, trigger)
                    queued.append(source.key)
        self._cursor = (start + limit) % len(paths)
        return queued


def parse_agent_file(text: str) -> set[str]:
    """The ``mount/path`` names listed in an agent-rendered file (see the module docstring)."""
    names: set[str] = set()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.split("@", 1)[0].strip()
        if "/" in line and " " not in line:
            names.add(line.strip("/"))
    return names


class AgentFileWatcher(Generic[K]):
    """Checks a file for changes every ``interval`` seconds (stat, then a content hash)."""

    def __init__(
        self,
        path: Path,
        sources: Callable[[], Iterable[Source[K]]],
        queue: Callable[[K, str], None],
        check_all: Callable[[], object],
        *,
        interval: float = 0.02,
    ) -> None:
        self.path = path
        self.sources = sources
        self.queue = queue
        self.check_all = check_all
        self.interval = interval
        self._digest: bytes | None = None
        self._stat: tuple[int, int, int] | None = None
        self.changes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def prime(self) -> None:
        """Remember the current content without acting on it."""
        try:
            st = self.path.stat()
            self._stat = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            self._stat = None
        self._digest = self._read_digest()[0]

    def _read_digest(self) -> tuple[bytes | None, str]:
        try:
            content = self.path.read_bytes()
        except OSError:
            return None, ""
        return hashlib.sha256(content).digest(), content.decode("utf-8", "replace")

    def check(self) -> list[K] | None:
        """One look at the file; returns the keys queued (None: unchanged)."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if stamp == self._stat and stamp is not None:
            return None
        self._stat = stamp
        digest, text = self._read_digest()
        if digest is None or digest == self._digest:
            return None
        self._digest = digest
        self.changes += 1
        named = parse_agent_file(text)
        queued: list[K] = []
        if named:
            for source in self.sources():
                if source_name(source.mount, source.path) in named:
                    self.queue(source.key, "agent")
                    queued.append(source.key)
        if not queued:
            log.info("agent file %s changed: checking every source", self.path)
            self.check_all()
        else:
            log.info("agent file %s changed: %d credential(s) queued", self.path, len(queued))
        return queued

    def start(self) -> None:
        self.prime()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name="vaultbridge-agent-file", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:
                log.exception("agent file watch failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
