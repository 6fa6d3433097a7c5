"""Benchmark the semantic result cache on our own workloads, LMDB and Redis both.

Everything runs in one process and every ratio is against a baseline measured in that
process; nothing asserts on time. Like for like: each timed run is a whole ``run_local``
(generate, execute, reconstruct with the exact reference, report; no terms.png, which a run
draws only when asked), and before every run the process's cache sessions and kept canonical
forms are reset, so nothing held in memory by an earlier run counts: a warm run reads the
store, as a new process would. One untimed warm-up run (no cache) comes first, so imports
and simulator set-up are in no timer.

Cases (issue 14, acceptance 2):

(a) the default workload run twice: the second run's wall time over the first's
    (target at most 1/10);
(b) a 20-point sweep that changes only partition B's angles: the share of unique
    subexperiments served from the cache over the sweep (target at least 45%), and the
    sweep's wall time without the cache over with it;
(c) a QAOA MaxCut ring of 12 qubits, p=1, uniform angles, cut into halves of 6: the share
    of one cold run's unique subexperiments served by relabelled hits (target at least 40%);
(d) a COBYLA QAOA optimisation (``qhybrid run qaoa``: ring of 12, p=1, 30 evaluations, cold
    cache): the share of subexperiment evaluations the cache avoided, against the published
    27.6% of circuit evaluations avoided, and the loop's wall time without the cache over
    with it.

Usage:
    .venv/bin/python benchmarks/bench_cache.py [--redis-url redis://127.0.0.1:6379/0] [--json PATH]

Without --redis-url a redis-server is started on loopback when Debian's binary is installed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from qhybrid.scenarios.qaoa import maxcut_observable, pauli_sum_text, qaoa_maxcut_circuit
from qiskit import QuantumCircuit, qasm3

from qhybrid.cache.session import OFF, CacheSettings, reset_sessions
from qhybrid.cache.stores import open_store
from qhybrid.pipeline.runner import run_local
from qhybrid.pipeline.simulate import forget_canonical_forms
from qhybrid.pipeline.sweep import Sweep, run_sweep
from qhybrid.pipeline.variational import QaoaSpec, run_qaoa
from qhybrid.spec import RunSpec


def timed_run(spec: RunSpec, out: Path, cache: CacheSettings) -> tuple[float, dict[str, Any]]:
    reset_sessions()  # what a new process would have: no results in memory,
    forget_canonical_forms()  # and no canonical forms
    started = time.perf_counter()
    report = run_local(spec, out, cache=cache, progress=False)
    return time.perf_counter() - started, report


def sweep_circuit(shift: float) -> QuantumCircuit:
    """8 qubits, partitions AAAABBBB: fixed angles on A, angles shifted by ``shift`` on B."""
    rng = np.random.default_rng(11)
    angles = rng.uniform(-np.pi, np.pi, size=(3, 8))
    circuit = QuantumCircuit(8)
    for layer in range(3):
        for q in range(8):
            circuit.ry(angles[layer, q] + (shift if q >= 4 else 0.0), q)
        for q in range(7):
            circuit.cx(q, q + 1)
    return circuit


def sweep_spec(shift: float) -> RunSpec:
    return RunSpec(
        circuit_qasm=qasm3.dumps(sweep_circuit(shift)),
        circuit_source=f"sweep B+{shift:.3f}",
        observable="ZZZZZZZZ + XIIIIIIX",
        partition="AAAABBBB",
    )


def ring_spec() -> RunSpec:
    ring = tuple((i, (i + 1) % 12) for i in range(12))
    return RunSpec(
        circuit_qasm=qasm3.dumps(qaoa_maxcut_circuit(ring, layers=1, seed=3)),
        circuit_source="qaoa ring 12 p1",
        observable=pauli_sum_text(maxcut_observable(ring)),
        partition="AAAAAABBBBBB",
    )


def start_redis(folder: Path) -> tuple[str, subprocess.Popen[bytes]] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return f"redis://127.0.0.1:{port}/0", process
        except OSError:
            time.sleep(0.05)
    process.kill()
    return None


def clear_store(location: str) -> None:
    """Empty the store, so a measurement starts cold."""
    reset_sessions()
    store = open_store(location)
    try:
        store.delete(list(store.keys(b"qhybrid:")))
    finally:
        store.close()


def served(report: dict[str, Any]) -> int:
    return sum(report["cache"]["hits"].values())


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def bench_store(name: str, location: str, work: Path) -> dict[str, Any]:
    cache = CacheSettings(location=location)
    out: dict[str, Any] = {"store": name}
    default = RunSpec(scenario="cutting")
    first, report_first = timed_run(default, work / f"{name}-a1", cache)
    second, report_second = timed_run(default, work / f"{name}-a2", cache)
    assert report_first["estimate"] == report_second["estimate"]
    out["a"] = {"first_s": first, "second_s": second, "ratio": second / first}
    print(
        f"[{name}] (a) default workload twice: first {first:.3f} s, second {second:.3f} s, "
        f"second/first {second / first:.3f} (target <= 0.100) {mark(second / first <= 0.1)}"
    )

    shifts = np.linspace(0.0, 1.0, 20)
    with_cache = without = 0.0
    unique = hits = 0
    for i, shift in enumerate(shifts):
        seconds, report = timed_run(sweep_spec(float(shift)), work / f"{name}-b{i}", cache)
        with_cache += seconds
        unique += report["counts"]["unique"]
        hits += served(report)
        baseline, plain = timed_run(sweep_spec(float(shift)), work / f"{name}-b{i}-plain", OFF)
        without += baseline
        assert plain["estimate"] == report["estimate"]
    share = hits / unique
    out["b"] = {"unique": unique, "served": hits, "share": share, "speedup": without / with_cache}
    print(
        f"[{name}] (b) 20-point sweep of partition B: {hits} of {unique} unique subexperiments served "
        f"from the cache ({share:.1%}, target >= 45%) {mark(share >= 0.45)}; sweep {without:.2f} s without "
        f"the cache, {with_cache:.2f} s with it: {without / with_cache:.2f}x"
    )

    # The same sweep as one command (`run cutting --sweep B=0:1:20`): one process, so canonical
    # forms computed at one point serve the next on both sides; only the result cache differs.
    sweep_times = {}
    for label, settings in (("without", OFF), ("with", cache)):
        if settings is cache:
            clear_store(location)
        reset_sessions()
        forget_canonical_forms()
        started = time.perf_counter()
        table = run_sweep(
            sweep_spec(0.0), Sweep("B", 0.0, 1.0, 20), work / f"{name}-b-{label}", cache=settings
        )
        sweep_times[label] = time.perf_counter() - started
    out["b_one_command"] = {**sweep_times, "share": table["share_served"]}
    print(
        f"[{name}] (b) the same sweep as one command: {sweep_times['without']:.2f} s without the cache, "
        f"{sweep_times['with']:.2f} s with it: {sweep_times['without'] / sweep_times['with']:.2f}x "
        f"({table['share_served']:.1%} served)"
    )

    seconds, report = timed_run(ring_spec(), work / f"{name}-c", cache)
    relabelled = report["cache"]["hits"]["relabelled"]
    unique_c = report["counts"]["unique"]
    out["c"] = {"unique": unique_c, "relabelled": relabelled, "share": relabelled / unique_c}
    print(
        f"[{name}] (c) QAOA ring 12, p=1, halves of 6, one cold run: {relabelled} of {unique_c} unique "
        f"subexperiments served by relabelled hits ({relabelled / unique_c:.1%}, target >= 40%) "
        f"{mark(relabelled / unique_c >= 0.4)}"
    )
    reset_sessions()
    forget_canonical_forms()
    qaoa = QaoaSpec(nodes=12, layers=1, max_evaluations=30, seed=0)
    started = time.perf_counter()
    cached = run_qaoa(qaoa, work / f"{name}-d", cache=cache)
    with_cache_d = time.perf_counter() - started
    reset_sessions()
    forget_canonical_forms()
    started = time.perf_counter()
    plain_d = run_qaoa(qaoa, work / f"{name}-d-plain", cache=OFF)
    without_d = time.perf_counter() - started
    assert [e["energy"] for e in plain_d["trace"]] == [e["energy"] for e in cached["trace"]]
    avoided = cached["subexperiments"]["fraction_avoided"]
    out["d"] = {"fraction_avoided": avoided, "with_cache_s": with_cache_d, "without_s": without_d}
    avoided_n, unique_d = cached["subexperiments"]["served_from_cache"], cached["subexperiments"]["unique"]
    print(
        f"[{name}] (d) COBYLA QAOA, ring 12, p=1, {cached['evaluations']} evaluations: {avoided_n} of "
        f"{unique_d} subexperiment evaluations avoided ({avoided:.1%}; published: 27.6% of circuit "
        f"evaluations) {mark(avoided > 0.276)}; loop {without_d:.2f} s without the cache, "
        f"{with_cache_d:.2f} s with it: {without_d / with_cache_d:.2f}x; best energy "
        f"{cached['best']['energy']:.6f}, maximum cut {cached['optimum']['max_cut']}"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as folder:
        work = Path(folder)
        timed_run(RunSpec(scenario="cutting"), work / "warm-up", OFF)  # imports, simulator set-up
        results.append(bench_store("lmdb", str(work / "lmdb"), work))
        server = None
        url = args.redis_url
        if url is None:
            started = start_redis(work)
            if started is None:
                print("[redis] skipped: no redis-server on this machine and no --redis-url")
            else:
                url, server = started
        try:
            if url is not None:
                results.append(bench_store("redis", url, work))
        finally:
            if server is not None:
                server.kill()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")


if __name__ == "__main__":
    main()
