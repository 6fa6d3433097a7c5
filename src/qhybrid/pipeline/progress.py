"""Progress of the execute phase: one bar per backend branch, and the gateway's jobs for the QPU branch.

Workers (threads or processes) report finished ranges and, from the qpu backend,
gateway job events; this display turns them into rich progress bars on stderr.
It draws nothing when disabled (``--quiet``) or when stderr is not a terminal.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# A gateway job's states, as the progress line groups them.
_DONE_STATES = frozenset({"succeeded", "failed", "cancelled"})


class ExecuteProgress:
    """Bars of unique subexperiments done per planned backend, plus gateway job states."""

    def __init__(
        self, backends: Sequence[str], done: Sequence[tuple[int, int]], console: Console, *, enabled: bool
    ) -> None:
        """Count each branch's subexperiments (``backends``: one per unique id) and those already done."""
        self._backends = list(backends)
        self._lock = threading.Lock()
        self._jobs: dict[str, str] = {}
        self._progress = Progress(
            TextColumn("executing {task.fields[branch]:>4}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[jobs]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not enabled,
        )
        finished = Counter(self._backends[uid] for start, stop in done for uid in range(start, stop))
        self._tasks: dict[str, TaskID] = {
            branch: self._progress.add_task(
                branch, total=total, completed=finished[branch], branch=branch, jobs=""
            )
            for branch, total in sorted(Counter(self._backends).items())
        }

    def __enter__(self) -> ExecuteProgress:
        """Start drawing."""
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop drawing and clear the bars."""
        self._progress.stop()

    def range_done(self, reply: dict[str, Any]) -> None:
        """Count a finished range [start, stop) against each branch its ids belong to."""
        with self._lock:
            for branch, count in Counter(self._backends[reply["start"] : reply["stop"]]).items():
                self._progress.advance(self._tasks[branch], count)

    def event(self, event: dict[str, Any]) -> None:
        """Take a backend's progress event (a gateway job's state) and show the QPU branch's jobs."""
        if event.get("event") != "gateway_job" or "qpu" not in self._tasks:
            return
        with self._lock:
            self._jobs[str(event["job"])] = str(event["state"])
            states = Counter(self._jobs.values())
            done = sum(count for state, count in states.items() if state in _DONE_STATES)
            line = f"gateway jobs: {states['queued']} queued, {states['running']} running, {done} done"
            self._progress.update(self._tasks["qpu"], jobs=line)
