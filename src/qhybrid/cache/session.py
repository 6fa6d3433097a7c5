"""One process's use of the cache: settings, the open store, counts, and failures kept out of runs.

A cache that is unreachable, full or corrupt never fails a run: every store call goes
through :class:`CacheSession`, which counts the failure and answers "miss" (or "not
written"), so the subexperiment is computed. A store that fails is left alone for
:data:`RETRY_AFTER_S` before it is tried again, so a dead Redis costs one timeout, not one
per batch.
"""

from __future__ import annotations

import os
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from prometheus_client import Counter as MetricCounter

from qhybrid.cache.entries import (
    CorruptEntry,
    ResultEntry,
    decode_document,
    decode_result,
    encode_document,
    encode_result,
)
from qhybrid.cache.stores import DEFAULT_MAX_BYTES, ResultStore, default_cache_dir, open_store
from qhybrid.provenance import cpu_description, package_versions

RETRY_AFTER_S = 30.0
# Results this process keeps in memory (canonical key -> entry): the run's own semantic dedup.
MEMORY_ENTRIES = 20_000

LOOKUPS = MetricCounter(
    "qhybrid_cache_lookups", "Result cache lookups by store and outcome.", ["store", "outcome"]
)
BYTES = MetricCounter(
    "qhybrid_cache_bytes", "Bytes read from and written to the result cache.", ["store", "direction"]
)
ERRORS = MetricCounter("qhybrid_cache_errors", "Result cache operations that failed.", ["store", "operation"])


@dataclass(frozen=True, kw_only=True)
class CacheSettings:
    """Where the cache is: an LMDB folder or a redis:// URL (``location`` None: the default folder)."""

    enabled: bool = True
    location: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES

    def resolved(self) -> str | None:
        """Return the store's location, or None when the cache is off."""
        if not self.enabled:
            return None
        return self.location or str(default_cache_dir())

    def to_json(self) -> dict[str, Any]:
        """Plain data for worker processes and pods."""
        return {"enabled": self.enabled, "location": self.location, "max_bytes": self.max_bytes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CacheSettings:
        """Read :meth:`to_json`'s output; an empty object is the cache off."""
        if not data:
            return cls(enabled=False)
        return cls(
            enabled=bool(data["enabled"]),
            location=data.get("location"),
            max_bytes=int(data.get("max_bytes", DEFAULT_MAX_BYTES)),
        )


OFF = CacheSettings(enabled=False)


def writer_provenance(run: str, backend: dict[str, str]) -> dict[str, Any]:
    """Who wrote an entry: the run, the pod or host, the backend, package versions and CPU."""
    return {
        "run": run,
        "pod": os.environ.get("HOSTNAME") or os.uname().nodename,
        "backend": backend,
        "versions": package_versions(),
        "cpu": cpu_description(),
        "written_at": time.time(),
    }


class CacheSession:
    """The store this process uses (or none), its in-memory results, and what happened to each lookup."""

    def __init__(self, settings: CacheSettings) -> None:
        """Open nothing yet: the store opens on first use, and a failure to open is counted."""
        self.settings = settings
        self.location = settings.resolved()
        self.kind = "none" if self.location is None else ("redis" if "://" in self.location else "lmdb")
        self.counts: Counter[str] = Counter()
        self._store: ResultStore | None = None
        self._failed_at: float | None = None
        self._memory: OrderedDict[bytes, ResultEntry] = OrderedDict()
        # What the last peek read and decoded (entry, stored size): the real lookup that follows
        # it (a warm run's plan memo, then its hits) takes them from here instead of the store.
        self._peeked: dict[bytes, tuple[ResultEntry, int]] = {}

    def _open(self, operation: str) -> ResultStore | None:
        if self.location is None:
            return None
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_AFTER_S:
            return None
        if self._store is None:
            try:
                self._store = open_store(self.location, max_bytes=self.settings.max_bytes)
            except Exception as error:  # noqa: BLE001 - any failure to open degrades to computing
                self._fail(operation, error)
                return None
        return self._store

    def _fail(self, operation: str, error: BaseException) -> None:
        """Count a failed store call, and rest the store (closed) for RETRY_AFTER_S."""
        self._count_error(operation, error)
        self._failed_at = time.monotonic()
        if self._store is not None:
            try:
                self._store.close()
            except Exception:  # noqa: BLE001 - it is already failing
                pass
            self._store = None

    def remembered(self, key: bytes) -> ResultEntry | None:
        """Return what this process already holds under ``key`` (nothing when the cache is off)."""
        entry = self._memory.get(key)
        if entry is not None:
            self._memory.move_to_end(key)
        return entry

    def remember(self, key: bytes, entry: ResultEntry) -> None:
        """Hold an entry in memory (bounded, least recently used out first; only when the cache is on).

        With the cache off nothing is kept between calls: each batch still computes each of its
        distinct canonical forms once, and no more.
        """
        if self.location is None:
            return
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > MEMORY_ENTRIES:
            self._memory.popitem(last=False)

    def get_many(self, keys: Sequence[bytes], *, peek: bool = False) -> list[ResultEntry | None]:
        """Look keys up in the store; failures and corrupt entries count and read as misses.

        ``peek`` only asks whether entries are there and sound (a plan memo's check): a corrupt
        one reads as a miss without being counted or removed, which the real lookup does. The
        sound entries a peek read are kept for the next real lookup, which takes them as read
        from the store (entries are written once, so they cannot have changed), counted the same.
        """
        store = self._open("get")
        if store is None or not keys:
            if store is None and self.location is not None:
                self.counts["unavailable"] += len(keys)  # looked up nowhere: the store is failing
            return [None] * len(keys)
        peeked, self._peeked = self._peeked, {}
        unread = [key for key in keys if key not in peeked]
        try:
            read = dict(zip(unread, store.get_many(unread), strict=True)) if unread else {}
        except Exception as error:  # noqa: BLE001 - an unavailable cache never fails a run
            self._fail("get", error)
            return [None] * len(keys)
        entries: list[ResultEntry | None] = []
        for key in keys:
            if key in peeked:
                entry, size = peeked[key]
                if peek:
                    self._peeked[key] = peeked[key]
                else:
                    self._count_read(size)
                entries.append(entry)
                continue
            value = read[key]
            if value is None:
                entries.append(None)
                continue
            if not peek:
                self._count_read(len(value))
            try:
                entry = decode_result(bytes(value))
            except CorruptEntry as error:
                entries.append(None)
                if peek:
                    continue
                self.counts["corrupt"] += 1
                self._count_error("decode", error)
                self._drop(store, key)  # else write-once would keep the damaged entry forever
                continue
            if peek:
                self._peeked[key] = (entry, len(value))
            entries.append(entry)
        return entries

    def _count_read(self, size: int) -> None:
        _child(BYTES, self.kind, "read").inc(size)
        self.counts["bytes_read"] += size

    def _drop(self, store: ResultStore, key: bytes) -> None:
        try:
            store.delete([key])
        except Exception as error:  # noqa: BLE001 - a failing store is counted, never raised
            self._fail("delete", error)

    def _count_error(self, operation: str, error: BaseException) -> None:
        self.counts["errors"] += 1
        _child(ERRORS, self.kind, operation).inc()

    def put_many(self, entries: Sequence[tuple[bytes, ResultEntry]]) -> None:
        """Write entries once each, in one transaction; a full or dead store is counted, never raised."""
        store = self._open("put")
        if store is None or not entries:
            return
        items = [(key, encode_result(entry)) for key, entry in entries]
        try:
            written = store.put_many(items)
        except Exception as error:  # noqa: BLE001 - a full or dead cache never fails a run
            self._fail("put", error)
            return
        for (_, value), done in zip(items, written, strict=True):
            if done:
                self.counts["written"] += 1
                self.counts["bytes_written"] += len(value)
                _child(BYTES, self.kind, "written").inc(len(value))

    def get_document(self, key: bytes, kind: str) -> tuple[str, Any] | None:
        """Return (check, document) stored under ``key``, or None (absent, unreachable, corrupt)."""
        store = self._open("get")
        if store is None:
            return None
        try:
            (value,) = store.get_many([key])
            if value is None:
                return None
            check, document, _ = decode_document(bytes(value), kind)
        except CorruptEntry as error:
            self._count_error("decode", error)
            return None
        except Exception as error:  # noqa: BLE001 - an unavailable cache never fails a run
            self._fail("get", error)
            return None
        return check, document

    def put_document(
        self, key: bytes, kind: str, check: str, document: Any, provenance: dict[str, Any]
    ) -> None:
        """Write a document entry once; failures are counted, never raised."""
        store = self._open("put")
        if store is None:
            return
        try:
            store.put_if_absent(key, encode_document(kind, check, document, provenance))
        except Exception as error:  # noqa: BLE001 - a full or dead cache never fails a run
            self._fail("put", error)

    def count(self, outcome: str, n: int = 1) -> None:
        """Count lookups by outcome (``hit_exact``, ``miss``, ...) here and in the metrics."""
        self.counts[outcome] += n
        _child(LOOKUPS, self.kind, outcome).inc(n)


@cache
def _child(metric: MetricCounter, store: str, what: str) -> Any:
    """A counter's child for a store and outcome or operation (found once: a run counts thousands)."""
    return metric.labels(store, what)


_sessions: dict[CacheSettings, CacheSession] = {}


def session_for(settings: CacheSettings) -> CacheSession:
    """Return this process's session for the settings (one per process, like the backends)."""
    if settings not in _sessions:
        _sessions[settings] = CacheSession(settings)
    return _sessions[settings]


def reset_sessions() -> None:
    """Forget this process's sessions and the results they hold (benchmarks and tests start cold)."""
    for session in _sessions.values():
        if session._store is not None:
            session._store.close()
    _sessions.clear()
