"""The local runner: generate -> execute (a pool of worker processes) -> reconstruct -> report."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from qhybrid import atomic
from qhybrid.backends import GatewaySettings
from qhybrid.errors import InputError, QhybridError
from qhybrid.pipeline.execute import execute
from qhybrid.pipeline.generate import generate
from qhybrid.pipeline.reconstruct import reconstruct_run
from qhybrid.pipeline.report import build_report
from qhybrid.pipeline.rundir import RunDir, pending_ranges
from qhybrid.spec import RunSpec

# Unique subexperiments per execute task: big enough that a task's overhead is small,
# small enough that a resumed run loses little and two workers stay balanced.
DEFAULT_BATCH_SIZE = 64
DEFAULT_WORKERS = 1
RangeDone = Callable[[dict[str, Any]], None]


def run_local(
    spec: RunSpec,
    out: Path,
    *,
    workers: int = DEFAULT_WORKERS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    console: Console | None = None,
    gateway: GatewaySettings | None = None,
) -> dict[str, Any]:
    """Run every step for ``spec`` in ``out``, resuming whatever is already done there.

    ``gateway`` says where the qpu backend finds the QPU gateway (policies that use it).
    """
    if workers < 1:
        raise InputError("--workers", f"must be at least 1, got {workers}")
    if batch_size < 1:
        raise InputError("--batch-size", f"must be at least 1, got {batch_size}")
    console = console or Console(stderr=True)
    run_dir = RunDir(out)
    wall_started = time.perf_counter()
    with console.status("generating subexperiments"):
        manifest = generate(run_dir, spec, gateway=gateway)
    # generate has checked that the directory holds this run; a killed earlier attempt may
    # have left temporary files behind, which no step reads: clear them.
    atomic.remove_stale_temporaries(run_dir.root)
    total = manifest["counts"]["unique"]
    # Result files of workflow branches (one backend's ids of a range) count as done too.
    backends = [entry["backend"] for entry in manifest["plan"]["unique"]]
    todo = pending_ranges(run_dir.done_ranges(backends), total, batch_size)
    remaining = sum(stop - start for start, stop in todo)
    execute_started = time.perf_counter()
    with Progress(
        TextColumn("executing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("unique subexperiments"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("execute", total=total, completed=total - remaining)

        def advance(reply: dict[str, Any]) -> None:
            progress.advance(task, reply["stop"] - reply["start"])

        if workers == 1 or len(todo) <= 1:
            for start, stop in todo:
                advance(execute(run_dir, start, stop, gateway=gateway))
        else:
            _execute_in_pool(run_dir, todo, workers, advance, gateway or GatewaySettings())
    execute_seconds = time.perf_counter() - execute_started
    with console.status("reconstructing"):
        reconstruct_run(run_dir)
    return build_report(
        run_dir,
        timings={
            "execute_wall": execute_seconds,
            "total_wall": time.perf_counter() - wall_started,
        },
    )


def _execute_in_pool(
    run_dir: RunDir, todo: list[tuple[int, int]], workers: int, done: RangeDone, gateway: GatewaySettings
) -> None:
    """Feed ranges to worker processes; stop at the first failure, leaving finished files in place."""
    settings = gateway.to_json()
    ranges: queue.Queue[tuple[int, int]] = queue.Queue()
    for item in todo:
        ranges.put(item)
    failures: list[str] = []
    lock = threading.Lock()

    def drive(process: subprocess.Popen[str]) -> None:
        assert process.stdin is not None and process.stdout is not None
        while not failures:
            try:
                start, stop = ranges.get_nowait()
            except queue.Empty:
                return
            process.stdin.write(json.dumps({"start": start, "stop": stop, "gateway": settings}) + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
            if not line:
                failures.append(f"a worker exited (code {process.wait()}) while executing [{start}, {stop})")
                return
            reply = json.loads(line)
            if "error" in reply:
                failures.append(reply["error"])
                return
            with lock:
                done(reply)

    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "qhybrid.pipeline.worker", str(run_dir.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(min(workers, len(todo)))
    ]
    threads = [threading.Thread(target=drive, args=(p,), daemon=True) for p in processes]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for process in processes:
            if process.stdin:
                process.stdin.close()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    if failures:
        raise QhybridError(f"{failures[0]}; finished results are kept: --resume {run_dir.root}")
