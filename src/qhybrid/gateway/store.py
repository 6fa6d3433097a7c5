"""Durable job records in SQLite (WAL): a job is recorded before it is acknowledged and runs at most once.

Each state change is one conditional UPDATE (``... WHERE state = 'queued'``), so
of two attempts to claim or finish a job exactly one succeeds, across threads
and across restarts. All writes go through one connection behind a Python lock
(SQLite allows one writer anyway, and its busy handler would sleep in steps of
milliseconds under contention); readers use their own connections, which WAL
lets run beside the writer. With ``synchronous=NORMAL`` a committed job
survives a killed process; ``FULL`` also survives losing the machine.

A full volume is an expected fault, not a crash: a write that SQLite refuses for
lack of space (SQLITE_FULL, or an I/O error) is rolled back and raised as
:class:`StorageFull`, so admission answers 507 and accepts nothing it could not
record; the WAL is then checkpointed and truncated, and ``journal_size_limit``
keeps it from growing back past a bound, so freeing space is enough to recover.

States: queued -> running -> succeeded | failed, and queued -> cancelled. Shots
are reserved against the client's budget in the transaction that accepts the
job and given back in the one that fails or cancels it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qhybrid.gateway.store_errors import BudgetExceeded, KeyConflict, QueueFull, StorageFull

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    client TEXT NOT NULL,
    job_key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    backend TEXT NOT NULL,
    shots INTEGER NOT NULL,
    num_circuits INTEGER NOT NULL,
    seeds TEXT NOT NULL,
    format TEXT NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    completions INTEGER NOT NULL DEFAULT 0,
    run_token TEXT,
    provider_job_id TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    result TEXT,
    error TEXT,
    UNIQUE (client, job_key)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS write_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS budgets (client TEXT PRIMARY KEY, shots_reserved INTEGER NOT NULL);
"""
__all__ = ["BudgetExceeded", "JobStore", "KeyConflict", "NewJob", "QueueFull", "StorageFull"]
ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
_STATUS_COLUMNS = (
    "id, client, job_key, request_sha256, backend, shots, num_circuits, state, attempts, completions, "
    "provider_job_id, created_at, started_at, finished_at, error"
)


@dataclass(frozen=True)
class NewJob:
    """What admission records."""

    client: str
    job_key: str
    request_sha256: str
    backend: str
    shots: int
    seeds: list[int]
    format: str
    payload: bytes


# SQLite's primary result codes for "no space" and "I/O error" (the low byte of an extended code).
_SQLITE_IOERR, _SQLITE_FULL = 10, 13
WAL_PAGES_BEFORE_CHECKPOINT = 200  # about 800 KiB of 4 KiB pages (SQLite's default is 1000)
WAL_SIZE_LIMIT_BYTES = 1024 * 1024  # what a checkpoint truncates the WAL back to


def _is_storage_error(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_IOERR, _SQLITE_FULL)
    text = str(error).lower()
    return "disk is full" in text or "disk i/o error" in text


class JobStore:
    """The gateway's job table."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        """Open (creating) the database and count the active jobs."""
        self.path = path
        self.synchronous = synchronous
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self.storage_error: str | None = None  # why the last write failed, until one succeeds
        self.storage_failures = 0
        self._local = threading.local()
        self._writer = self._connect()
        with self._write_lock:
            self._writer.executescript(SCHEMA)
        self.queued: Counter[str] = Counter()  # backend -> queued jobs (the queue depth)
        self.running: Counter[str] = Counter()
        for backend, state, count in self._writer.execute(
            "SELECT backend, state, count(*) FROM jobs WHERE state IN ('queued', 'running') GROUP BY 1, 2"
        ):
            (self.queued if state == "queued" else self.running)[backend] = count

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self.synchronous}")
        connection.execute("PRAGMA busy_timeout=30000")
        connection.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES_BEFORE_CHECKPOINT}")
        connection.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        connection.row_factory = sqlite3.Row
        return connection

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """Hold the write lock; turn a write refused for space into :class:`StorageFull`."""
        with self._write_lock:
            try:
                yield self._writer
            except sqlite3.Error as error:
                if not _is_storage_error(error):
                    raise
                self._rollback()
                self.storage_failures += 1
                self.storage_error = f"{type(error).__name__}: {error}"
                self._shrink_wal()
                raise StorageFull(self.storage_error) from None
            self.storage_error = None

    def _rollback(self) -> None:
        if self._writer.in_transaction:
            try:
                self._writer.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite rolled it back itself (it does on SQLITE_FULL in some states)

    def _shrink_wal(self) -> None:
        """Copy the WAL into the database and truncate it, giving its space back to the volume."""
        try:
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error:
            pass  # the next failure tries again; a checkpoint needs no new space in the WAL

    def probe_write(self) -> bool:
        """Try one tiny write (readiness asks while writes fail); return whether it succeeded."""
        try:
            with self._writing():
                self._writer.execute(
                    "INSERT OR REPLACE INTO write_probe (id, at) VALUES (1, ?)", (time.time(),)
                )
        except StorageFull:
            return False
        return True

    @property
    def writable(self) -> bool:
        """Return False while the last write failed for lack of space."""
        return self.storage_error is None

    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
        return connection

    def close(self) -> None:
        """Close the writer (readers close with their threads)."""
        with self._write_lock:
            self._writer.close()

    @property
    def total_queued(self) -> int:
        """Return the number of queued jobs over all backends."""
        return sum(self.queued.values())

    # --- admission ---

    def admit(self, job: NewJob, *, max_queued: int, shot_budget: int | None) -> tuple[dict[str, Any], bool]:
        """Record ``job`` and return (its status, True); for a known key return (that job, False).

        Raises :class:`KeyConflict`, :class:`BudgetExceeded` or :class:`QueueFull`.
        """
        cost = job.shots * len(job.seeds)
        with self._writing():
            existing = self._writer.execute(
                f"SELECT {_STATUS_COLUMNS} FROM jobs WHERE client = ? AND job_key = ?",
                (job.client, job.job_key),
            ).fetchone()
            if existing is not None:
                if existing["request_sha256"] != job.request_sha256:
                    raise KeyConflict(existing["id"])
                if existing["state"] != "failed":
                    return dict(existing), False
                # A failed job (say, the provider refused rotated credentials) ran nothing to
                # keep: its key, resubmitted, queues the same job again instead of replaying
                # the failure, so a fix takes effect without the client changing its request.
                return self._requeue(dict(existing), cost, max_queued, shot_budget), True
            if self.total_queued >= max_queued:
                raise QueueFull
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                self._reserve(job.client, cost, shot_budget)
                job_id = uuid.uuid4().hex
                now = time.time()
                self._writer.execute(
                    "INSERT INTO jobs (id, client, job_key, request_sha256, backend, shots, num_circuits, "
                    "seeds, format, payload, state, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                    (
                        job_id,
                        job.client,
                        job.job_key,
                        job.request_sha256,
                        job.backend,
                        job.shots,
                        len(job.seeds),
                        json.dumps(job.seeds),
                        job.format,
                        job.payload,
                        now,
                    ),
                )
                self._writer.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self.queued[job.backend] += 1
        status = self.status(job_id)
        assert status is not None
        return status, True

    def _requeue(
        self, existing: dict[str, Any], cost: int, max_queued: int, shot_budget: int | None
    ) -> dict[str, Any]:
        """Queue a failed job again, reserving its shots again (its failure gave them back)."""
        if self.total_queued >= max_queued:
            raise QueueFull
        client = existing["client"]
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            self._reserve(client, cost, shot_budget)
            self._writer.execute(
                "UPDATE jobs SET state = 'queued', error = NULL, run_token = NULL, provider_job_id = NULL, "
                "started_at = NULL, finished_at = NULL WHERE id = ? AND state = 'failed'",
                (existing["id"],),
            )
            self._writer.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self.queued[existing["backend"]] += 1
        existing.update(state="queued", error=None, provider_job_id=None, started_at=None, finished_at=None)
        return existing

    def _reserve(self, client: str, cost: int, shot_budget: int | None) -> None:
        """Reserve ``cost`` shots of the client's budget (inside the caller's transaction)."""
        row = self._writer.execute(
            "SELECT shots_reserved FROM budgets WHERE client = ?", (client,)
        ).fetchone()
        used = row[0] if row else 0
        if shot_budget is not None and used + cost > shot_budget:
            raise BudgetExceeded(client, used, shot_budget, cost)
        self._writer.execute(
            "INSERT INTO budgets (client, shots_reserved) VALUES (?, ?) ON CONFLICT (client) "
            "DO UPDATE SET shots_reserved = shots_reserved + excluded.shots_reserved",
            (client, cost),
        )

    def shots_reserved(self, client: str) -> int:
        """Return the shots a client has used or holds in active jobs."""
        row = (
            self._reader()
            .execute("SELECT shots_reserved FROM budgets WHERE client = ?", (client,))
            .fetchone()
        )
        return row[0] if row else 0

    # --- reads ---

    def status(self, job_id: str) -> dict[str, Any] | None:
        """Return a job's status fields (no payload, no result)."""
        row = self._reader().execute(f"SELECT {_STATUS_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return dict(row) if row else None

    def result(self, job_id: str) -> dict[str, Any] | None:
        """Return a job's status plus its parsed result."""
        row = (
            self._reader()
            .execute(f"SELECT {_STATUS_COLUMNS}, result FROM jobs WHERE id = ?", (job_id,))
            .fetchone()
        )
        if row is None:
            return None
        data = dict(row)
        data["result"] = json.loads(data["result"]) if data["result"] else None
        return data

    def payload(self, job_id: str) -> tuple[str, bytes, list[int]]:
        """Return a job's format, circuit payload and seeds."""
        row = (
            self._reader()
            .execute("SELECT format, payload, seeds FROM jobs WHERE id = ?", (job_id,))
            .fetchone()
        )
        return row["format"], bytes(row["payload"]), json.loads(row["seeds"])

    def ids_in_state(self, state: str) -> list[tuple[str, str]]:
        """Return (id, backend) of jobs in ``state``, oldest first."""
        rows = self._reader().execute("SELECT id, backend FROM jobs WHERE state = ? ORDER BY seq", (state,))
        return [(row["id"], row["backend"]) for row in rows]

    def client_jobs(
        self, client: str, *, state: str | None, limit: int, before: str | None
    ) -> list[dict[str, Any]]:
        """Return up to ``limit`` of ``client``'s jobs, newest first, older than job ``before`` if given."""
        sql = f"SELECT {_STATUS_COLUMNS} FROM jobs WHERE client = ?"
        params: list[Any] = [client]
        if state is not None:
            sql, params = sql + " AND state = ?", [*params, state]
        if before is not None:
            sql += " AND seq < (SELECT seq FROM jobs WHERE id = ? AND client = ?)"
            params += [before, client]
        rows = self._reader().execute(sql + " ORDER BY seq DESC LIMIT ?", (*params, limit))
        return [dict(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """Return the number of jobs in each state."""
        rows = self._reader().execute("SELECT state, count(*) FROM jobs GROUP BY state")
        return {state: count for state, count in rows}

    # --- transitions ---

    def _transition(self, sql: str, params: tuple[Any, ...]) -> bool:
        cursor = self._writer.execute(sql, params)
        return cursor.rowcount == 1

    def claim(self, job_id: str) -> str | None:
        """Move a queued job to running; return the attempt's run token, or None if it was not queued."""
        token = uuid.uuid4().hex
        with self._writing():
            rows = self._writer.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, run_token = ?, started_at = ? "
                "WHERE id = ? AND state = 'queued' RETURNING backend",
                (token, time.time(), job_id),
            ).fetchall()
            if not rows:
                return None
            self.queued[rows[0][0]] -= 1
            self.running[rows[0][0]] += 1
        return token

    def adopt(self, job_id: str) -> str | None:
        """Take over a running job left by a previous process (to fetch its provider result)."""
        token = uuid.uuid4().hex
        with self._writing():
            ok = self._transition(
                "UPDATE jobs SET run_token = ? WHERE id = ? AND state = 'running'", (token, job_id)
            )
        return token if ok else None

    def record_provider_job(self, job_id: str, token: str, provider_job_id: str) -> None:
        """Remember the provider's id for a running job before waiting on it."""
        with self._writing():
            self._transition(
                "UPDATE jobs SET provider_job_id = ? WHERE id = ? AND state = 'running' AND run_token = ?",
                (provider_job_id, job_id, token),
            )

    def finish(self, job_id: str, token: str, result: dict[str, Any]) -> dict[str, Any] | None:
        """Store a result; return the job's status, or None if this attempt no longer owns the job."""
        return self._end(
            job_id,
            token,
            "UPDATE jobs SET state = 'succeeded', completions = completions + 1, result = ?, finished_at = ? "
            "WHERE id = ? AND state = 'running' AND run_token = ? RETURNING backend",
            (json.dumps(result, separators=(",", ":")), time.time(), job_id, token),
            refund=False,
        )

    def fail(self, job_id: str, token: str, error: str) -> dict[str, Any] | None:
        """Mark a running job failed and give its shots back."""
        return self._end(
            job_id,
            token,
            "UPDATE jobs SET state = 'failed', error = ?, finished_at = ? "
            "WHERE id = ? AND state = 'running' AND run_token = ? RETURNING backend",
            (error, time.time(), job_id, token),
            refund=True,
        )

    def _end(
        self, job_id: str, token: str, sql: str, params: tuple[Any, ...], *, refund: bool
    ) -> dict[str, Any] | None:
        with self._writing():
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                # fetchall: a RETURNING statement holds its write until fully stepped.
                rows = self._writer.execute(sql, params).fetchall()
                row = rows[0] if rows else None
                if row is not None and refund:
                    self._refund(job_id)
                self._writer.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            if row is None:
                return None
            self.running[row[0]] -= 1
        return self.status(job_id)

    def _refund(self, job_id: str) -> None:
        self._writer.execute(
            "UPDATE budgets SET shots_reserved = shots_reserved - "
            "(SELECT shots * num_circuits FROM jobs WHERE id = ?) "
            "WHERE client = (SELECT client FROM jobs WHERE id = ?)",
            (job_id, job_id),
        )

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued job and give its shots back; False if it was not queued."""
        with self._writing():
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                rows = self._writer.execute(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ? AND state = 'queued' "
                    "RETURNING backend",
                    (time.time(), job_id),
                ).fetchall()
                if rows:
                    self._refund(job_id)
                self._writer.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            if not rows:
                return False
            self.queued[rows[0][0]] -= 1
        return True

    def recover(self) -> tuple[list[str], list[str]]:
        """After a restart: requeue running jobs with no provider job; return (requeued, to resume)."""
        with self._writing():
            requeued = [
                row[0]
                for row in self._writer.execute(
                    "UPDATE jobs SET state = 'queued', run_token = NULL "
                    "WHERE state = 'running' AND provider_job_id IS NULL RETURNING id"
                )
            ]
            resume = [
                row[0]
                for row in self._writer.execute(
                    "SELECT id FROM jobs WHERE state = 'running' AND provider_job_id IS NOT NULL ORDER BY seq"
                )
            ]
            self.queued.clear()
            self.running.clear()
            for backend, state, count in self._writer.execute(
                "SELECT backend, state, count(*) FROM jobs WHERE state IN ('queued', 'running') GROUP BY 1, 2"
            ):
                (self.queued if state == "queued" else self.running)[backend] = count
        return requeued, resume
