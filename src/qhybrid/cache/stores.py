"""The two stores behind one interface: LMDB embedded on one machine, Redis/Valkey shared.

Both write a key only if it is absent, so a later writer can never replace an entry
(one bad writer cannot overwrite good results), and both bound their size: LMDB by its
map size, evicting the least recently used entries when full or on ``gc``; Redis by the
server's ``maxmemory`` with an LRU policy (the blueprint's cache sets both).
"""

from __future__ import annotations

import os
import random
import struct
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from qhybrid.errors import InputError

DEFAULT_MAX_BYTES = 1 << 30
# Writes evict least recently used entries when the data passes the high-water mark, down
# to the low one.
_HIGH_WATER = 0.7
_LOW_WATER = 0.5
_ACCESS = struct.Struct("<d")


class ResultStore(Protocol):
    """Bytes by key, written once."""

    location: str  # what the report and the metrics call it ("lmdb:/path", "redis://host:port/db")
    kind: str  # "lmdb" or "redis"

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Return the value of each key, or None."""
        ...

    def put_if_absent(self, key: bytes, value: bytes) -> bool:
        """Write ``value`` unless the key exists; return whether it was written."""
        ...

    def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bool]:
        """``put_if_absent`` for each item, in one transaction or round trip."""
        ...

    def keys(self, prefix: bytes) -> Iterator[bytes]:
        """Iterate over the keys that start with ``prefix``."""
        ...

    def delete(self, keys: Sequence[bytes]) -> int:
        """Delete keys; return how many existed."""
        ...

    def stats(self) -> dict[str, Any]:
        """Return entries, bytes and the size bound."""
        ...

    def gc(self, max_bytes: int | None = None) -> int:
        """Evict least recently used entries until under the bound; return how many went."""
        ...

    def close(self) -> None:
        """Release connections and file handles."""
        ...


def default_cache_dir() -> Path:
    """Return the embedded store's default folder: $XDG_CACHE_HOME/qhybrid (or ~/.cache/qhybrid)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qhybrid" / "results.lmdb"


class LmdbStore:
    """An LMDB environment: one database of entries, one of last-access times (for LRU)."""

    kind = "lmdb"

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        """Open (creating) the environment; many processes may hold it at once."""
        import lmdb

        self.location = f"lmdb:{path}"
        self.max_bytes = max_bytes
        self._lmdb = lmdb
        path.mkdir(parents=True, exist_ok=True)
        self._env = lmdb.open(str(path), map_size=max_bytes, max_dbs=2, subdir=True, lock=True)
        self._entries = self._env.open_db(b"entries")
        self._access = self._env.open_db(b"access")

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Read every key in one transaction and record the hits' access time."""
        with self._env.begin(db=self._entries) as txn:
            values = [txn.get(key) for key in keys]
        hits = [key for key, value in zip(keys, values, strict=True) if value is not None]
        if hits:
            stamp = _ACCESS.pack(time.time())
            try:
                with self._env.begin(write=True, db=self._access) as txn:
                    for key in hits:
                        txn.put(key, stamp)
            except self._lmdb.MapFullError:
                pass  # an access time is advice for eviction, not data
        return values

    def put_if_absent(self, key: bytes, value: bytes) -> bool:
        """Write once (see :meth:`put_many`)."""
        return self.put_many([(key, value)])[0]

    def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bool]:
        """Write a batch once each in one transaction (one sync to disk, not one per entry).

        Least recently used entries are evicted first when the data nears the bound: LMDB
        needs free pages to record even a delete, so eviction starts at :data:`_HIGH_WATER`
        of the map rather than when it is full.
        """
        size = sum(len(value) for _, value in items)
        if self._used_bytes() + size > self.max_bytes * _HIGH_WATER:
            self._evict(int(self.max_bytes * _LOW_WATER))
        stamp = _ACCESS.pack(time.time())
        written = []
        with self._env.begin(write=True) as txn:
            for key, value in items:
                done = bool(txn.put(key, value, db=self._entries, overwrite=False))
                if done:
                    txn.put(key, stamp, db=self._access)
                written.append(done)
        return written

    def keys(self, prefix: bytes) -> Iterator[bytes]:
        """Iterate keys with a prefix (a snapshot: one read transaction)."""
        with self._env.begin(db=self._entries) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key in cursor.iternext(keys=True, values=False):
                    if not key.startswith(prefix):
                        break
                    yield bytes(key)

    def delete(self, keys: Sequence[bytes]) -> int:
        """Delete keys and their access times."""
        deleted = 0
        with self._env.begin(write=True) as txn:
            for key in keys:
                deleted += bool(txn.delete(key, db=self._entries))
                txn.delete(key, db=self._access)
        return deleted

    def _used_bytes(self) -> int:
        total = 0
        with self._env.begin() as txn:
            for db in (self._entries, self._access):
                stat = txn.stat(db)
                total += stat["psize"] * (stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"])
        return total

    def _evict(self, target_bytes: int) -> int:
        with self._env.begin(db=self._access) as txn:
            by_age = sorted(
                ((_ACCESS.unpack(bytes(v))[0], bytes(k)) for k, v in txn.cursor()), key=lambda item: item
            )
        evicted = 0
        for start in range(0, len(by_age), 16):
            if self._used_bytes() <= target_bytes:
                break
            evicted += self.delete([key for _, key in by_age[start : start + 16]])
        return evicted

    def stats(self) -> dict[str, Any]:
        """Entries (results, plans, references, plots), results, bytes in use, the bound."""
        from qhybrid.cache.entries import RESULT_PREFIX

        with self._env.begin() as txn:
            entries = txn.stat(self._entries)["entries"]
        return {
            "store": self.location,
            "entries": entries,
            "results": sum(1 for _ in self.keys(RESULT_PREFIX.encode())),
            "bytes": self._used_bytes(),
            "max_bytes": self.max_bytes,
            "eviction": "least recently used, when full or on gc",
        }

    def gc(self, max_bytes: int | None = None) -> int:
        """Evict least recently used entries down to ``max_bytes`` (default: 90% of the map)."""
        return self._evict(int(max_bytes if max_bytes is not None else self.max_bytes * 0.9))

    def close(self) -> None:
        """Close the environment."""
        self._env.close()


class RedisStore:
    """Redis or Valkey: ``SET NX`` writes once; the server's maxmemory LRU policy bounds it."""

    kind = "redis"

    def __init__(self, url: str, *, ttl_seconds: int | None = None, timeout_s: float = 2.0) -> None:
        """Connect lazily: an unreachable server fails the first call, which the caller counts."""
        import redis

        self.location = url
        self.ttl_seconds = ttl_seconds
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """One MGET for the batch."""
        if not keys:
            return []
        return [
            value if isinstance(value, bytes | None) else str(value).encode()
            for value in self._redis.mget(list(keys))
        ]

    def put_if_absent(self, key: bytes, value: bytes) -> bool:
        """``SET key value NX`` (with ``EX`` when a TTL is set)."""
        return bool(self._redis.set(key, value, nx=True, ex=self.ttl_seconds))

    def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bool]:
        """``SET NX`` each item in one pipelined round trip."""
        pipeline = self._redis.pipeline(transaction=False)
        for key, value in items:
            pipeline.set(key, value, nx=True, ex=self.ttl_seconds)
        return [bool(answer) for answer in pipeline.execute()]

    def keys(self, prefix: bytes) -> Iterator[bytes]:
        """SCAN the keyspace for the prefix."""
        for key in self._redis.scan_iter(match=prefix + b"*", count=1000):
            yield bytes(key)

    def delete(self, keys: Sequence[bytes]) -> int:
        """DEL in chunks."""
        deleted = 0
        for start in range(0, len(keys), 1000):
            deleted += int(self._redis.delete(*keys[start : start + 1000]))
        return deleted

    def stats(self) -> dict[str, Any]:
        """Entries under our prefix (results among them), server memory, its bound and eviction policy."""
        from qhybrid.cache.entries import RESULT_PREFIX

        memory: dict[str, Any] = dict(self._redis.info("memory"))
        try:
            policy = self._redis.config_get("maxmemory-policy").get("maxmemory-policy")
        except Exception:  # managed servers may refuse CONFIG; the stats still stand
            policy = "unknown (CONFIG refused)"
        return {
            "store": self.location,
            "entries": sum(1 for _ in self.keys(b"qhybrid:")),
            "results": sum(1 for _ in self.keys(RESULT_PREFIX.encode())),
            "bytes": int(memory.get("used_memory", 0)),
            "max_bytes": int(memory.get("maxmemory", 0)),
            "eviction": f"server policy {policy}",
        }

    def gc(self, max_bytes: int | None = None) -> int:
        """Nothing to do here: the server evicts by its own maxmemory policy."""
        return 0

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()


def open_store(location: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ResultStore:
    """Open the store a ``--cache`` value names: a redis:// or valkey:// URL, else an LMDB folder."""
    if location.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(location)
    if location.startswith("valkey://"):
        return RedisStore("redis://" + location.removeprefix("valkey://"))
    if "://" in location:
        raise InputError("--cache", f"{location!r}: give a folder (LMDB) or a redis:// URL")
    return LmdbStore(Path(location).expanduser(), max_bytes=max_bytes)


def sample_keys(store: ResultStore, prefix: bytes, count: int, seed: int) -> list[bytes]:
    """Return up to ``count`` keys chosen at random (seeded) among those with ``prefix``."""
    keys = sorted(store.keys(prefix))
    return random.Random(seed).sample(keys, min(count, len(keys)))
