"""The local runner: generate -> execute (a pool of worker processes) -> reconstruct -> report."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console

from qhybrid import atomic
from qhybrid.backends import GatewaySettings, check_backends
from qhybrid.cache.session import OFF, CacheSettings
from qhybrid.cost import PriceTable
from qhybrid.errors import InputError, QhybridError, RunFailed
from qhybrid.pipeline.execute import execute
from qhybrid.pipeline.gc_pacing import fewer_collections
from qhybrid.pipeline.generate import claim_run_dir, generate, regenerate_circuits, write_missing_shards
from qhybrid.pipeline.progress import ExecuteProgress
from qhybrid.pipeline.reconstruct import reconstruct_run
from qhybrid.pipeline.report import build_report
from qhybrid.pipeline.rundir import RunDir, holding_results, pending_ranges
from qhybrid.pipeline.terms_plot import write_terms_plot
from qhybrid.spec import RunSpec

# Unique subexperiments per execute task: big enough that a task's overhead is small,
# small enough that a resumed run loses little and two workers stay balanced.
DEFAULT_BATCH_SIZE = 64
DEFAULT_WORKERS = 1


@fewer_collections()  # planning, canonical forms and the engine allocate millions of small objects
@holding_results()  # reconstruct takes the results this process wrote as written, not read back
def run_local(
    spec: RunSpec,
    out: Path,
    *,
    workers: int = DEFAULT_WORKERS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    console: Console | None = None,
    gateway: GatewaySettings | None = None,
    progress: bool = True,
    keep_shards: bool | None = None,
    label: str | None = None,
    cache: CacheSettings = OFF,
    prices: PriceTable | None = None,
    plot: bool = False,
) -> dict[str, Any]:
    """Run every step for ``spec`` in ``out``, resuming whatever is already done there.

    ``gateway`` says where the qpu backend finds the QPU gateway (policies that use it)
    and what may fail over. ``progress`` draws bars on a terminal. ``keep_shards`` says
    whether generate writes QPY shards; by default only when worker processes will read
    them (``workers > 1``): an in-process run holds its circuits, and a resume rebuilds
    them from the spec, checking each against the plan. ``True`` keeps them anyway.
    A finished run is not run again: its report, with the original timings, is returned.
    ``cache`` is the result cache simulators read and write (off by default here; the CLI
    turns it on). ``prices`` is the table the report prices the run's usage with (the CLI
    passes a stack's; without one the report says so). ``plot`` draws terms.png too (also
    for a run that had finished without it).
    """
    if workers < 1:
        raise InputError("--workers", f"must be at least 1, got {workers}")
    if batch_size < 1:
        raise InputError("--batch-size", f"must be at least 1, got {batch_size}")
    if keep_shards is None:
        keep_shards = workers > 1
    if not keep_shards and workers > 1:
        raise InputError("--no-shards", "worker processes read the circuits from the shards; use --workers 1")
    console = console or Console(stderr=True)
    run_dir = RunDir(out)
    if run_dir.report_file.is_file():
        claim_run_dir(run_dir, spec)  # it must be this run
        atomic.remove_stale_temporaries(run_dir.root)  # what a killed writer left, as on any resume
        if plot and not run_dir.terms_plot_file.is_file():
            write_terms_plot(run_dir, cache)
        return dict(atomic.read_json(run_dir.report_file))
    wall_started = time.perf_counter()
    with console.status("generating subexperiments") if progress else nullcontext():
        manifest = generate(
            run_dir,
            spec,
            gateway=gateway,
            write_circuits=keep_shards,
            label=label,
            cache=cache,
            prices=prices,
        )
    # generate has checked that the directory holds this run; a killed earlier attempt may
    # have left temporary files behind, which no step reads: clear them.
    atomic.remove_stale_temporaries(run_dir.root)
    total = manifest["counts"]["unique"]
    # Result files of workflow branches (one backend's ids of a range) count as done too.
    backends = [entry["backend"] for entry in manifest["plan"]["unique"]]
    done = run_dir.done_ranges(backends)
    todo = pending_ranges(done, total, batch_size)
    pending_backends = {backends[uid] for start, stop in todo for uid in range(start, stop)}
    # A resumed run checks its backends again: a token may have expired meanwhile.
    check_backends(sorted(pending_backends), gateway)
    shardless = not manifest.get("shards_written", True)
    if todo and shardless and keep_shards:
        # A shard-less run resumed with worker processes (or --shards): they read shards, so
        # write them once here rather than have every worker rebuild the circuits.
        write_missing_shards(run_dir)
    elif todo and shardless and "canonical" not in manifest and not run_dir.generated().holds_all_circuits():
        # A resumed shard-less run rebuilds its circuits (generate, in this process, kept them).
        # With canonical forms in the plan, execute rebuilds circuits only if one must be computed.
        regenerate_circuits(run_dir)
    execute_started = time.perf_counter()
    with ExecuteProgress(backends, done, console, enabled=progress) as bars:
        if workers == 1 or len(todo) <= 1:
            for start, stop in todo:
                bars.range_done(
                    execute(run_dir, start, stop, gateway=gateway, events=bars.event, cache=cache)
                )
        else:
            _execute_in_pool(run_dir, todo, workers, bars, gateway or GatewaySettings(), cache)
    execute_seconds = time.perf_counter() - execute_started
    with console.status("reconstructing") if progress else nullcontext():
        reconstruct_run(run_dir, cache)
    report = build_report(
        run_dir,
        timings={
            "execute_wall": execute_seconds,
            "total_wall": time.perf_counter() - wall_started,
        },
    )
    if plot:
        write_terms_plot(run_dir, cache)
    return report


def _execute_in_pool(
    run_dir: RunDir,
    todo: list[tuple[int, int]],
    workers: int,
    bars: ExecuteProgress,
    gateway: GatewaySettings,
    cache: CacheSettings,
) -> None:
    """Feed ranges to worker processes; stop at the first failure, leaving finished files in place."""
    settings = gateway.to_json()
    ranges: queue.Queue[tuple[int, int]] = queue.Queue()
    for item in todo:
        ranges.put(item)
    failures: list[dict[str, Any]] = []
    lock = threading.Lock()

    def drive(process: subprocess.Popen[str]) -> None:
        assert process.stdin is not None and process.stdout is not None
        while not failures:
            try:
                start, stop = ranges.get_nowait()
            except queue.Empty:
                return
            request = {"start": start, "stop": stop, "gateway": settings, "cache": cache.to_json()}
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
            while True:
                line = process.stdout.readline()
                if not line:
                    exited = f"a worker exited (code {process.wait()}) while executing [{start}, {stop})"
                    failures.append({"error": exited, "run_failed": True})
                    return
                reply = json.loads(line)
                if "event" not in reply:
                    break
                bars.event(reply)
            if "error" in reply:
                failures.append(reply)
                return
            with lock:
                bars.range_done(reply)

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
        first = failures[0]
        if not first.get("run_failed"):
            raise QhybridError(first["error"])  # bad input or configuration: exit 2
        message = first["error"]
        if "--resume" not in message:
            message += f"; finished results are kept: --resume {run_dir.root}"
        raise RunFailed(message)
