"""QPU gateway benchmark on loopback with the trivial backend (acceptance: throughput, p99, added latency).

1. Throughput: locust, 50 users at a constant 6 tasks/s each (about 250 job
   submissions/s offered, each followed by a long-poll for its result), for 20 s:
   accepted jobs/s (new jobs the gateway completed per second of load) and the
   p99 of job submission. Targets: >= 200 jobs/s, p99 <= 250 ms on 2 cores.
2. Added latency: one client, one job at a time: submit + long-poll result through
   the gateway, against calling the same backend's run() in process. Both sides get
   the same number of untimed warm-up rounds first, then the same number of timed
   rounds; the statistic is the median on both. Target: the p50 difference <= 5 ms.

The load runs through ``tests/load/run_load.py`` as a command (its summary.json is
read back); the gateway for the latency part is started by the package's own
``qhybrid.gateway.loopback``. No test code is imported.

    .venv/bin/python benchmarks/bench_gateway.py [--duration 20] [--users 50]

Prints the figures and writes benchmarks/gateway.json. Timing is never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qiskit import QuantumCircuit

from qhybrid.gateway.config import BackendConfig
from qhybrid.gateway.loopback import start_gateway
from qhybrid.gateway.payload import encode_qpy
from qhybrid.gateway.providers import Trivial

REPO = Path(__file__).resolve().parents[1]
WARMUP_ROUNDS = 20


def circuit() -> QuantumCircuit:
    qc = QuantumCircuit(3, 3)
    qc.x(0)
    qc.cx(0, 2)
    qc.measure(range(3), range(3))
    return qc


def throughput(out: Path, users: int, duration: float, rate: float) -> dict:
    subprocess.run(
        [
            sys.executable, str(REPO / "tests" / "load" / "run_load.py"), "--shape", "constant",
            "--duration", str(duration), "--users", str(users), "--rate", str(rate), "--out", str(out),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    done = next(
        float(line.split()[-1])
        for line in summary["gateway_metrics"]
        if line.startswith("qhybrid_gateway_jobs_total") and 'state="succeeded"' in line
    )
    return {
        "users": users,
        "duration_s": duration,
        "offered_tasks_per_s": users * rate,
        "accepted_jobs_per_s": done / duration,
        "jobs_completed": done,
        "submit_p50_ms": summary["submit_latency_ms"]["p50"],
        "submit_p99_ms": summary["submit_latency_ms"]["p99"],
        "all_requests_per_s": summary["requests_per_s"],
        "all_requests_p99_ms": summary["latency_ms"]["p99"],
        "overload_429": summary["overload_429"],
        "unexpected_failures": summary["unexpected_failures"],
    }


def added_latency(out: Path, rounds: int) -> dict:
    import httpx

    shots, payload = 100, encode_qpy([circuit()])
    backend = Trivial(BackendConfig(name="trivial", kind="trivial"))
    direct = []
    for i in range(WARMUP_ROUNDS + rounds):
        started = time.perf_counter()
        backend.run([circuit()], shots, [1], lambda _: None)
        if i >= WARMUP_ROUNDS:  # the same warm-up rounds as the gateway side, excluded
            direct.append(time.perf_counter() - started)
    gateway = start_gateway(out, max_queued=10000, seconds_per_job=0.0, concurrency=1)
    try:
        via = []
        headers = {"Authorization": f"Bearer {gateway.token_file.read_text().strip()}"}
        with httpx.Client(base_url=gateway.url, headers=headers) as http:
            for i in range(WARMUP_ROUNDS + rounds):
                started = time.perf_counter()
                job = http.post(
                    "/v1/jobs", json={"job_key": f"lat-{i}", "shots": shots, "circuits": payload}
                ).json()
                result = http.get(f"/v1/jobs/{job['id']}/result", params={"wait": 10}).json()
                elapsed = time.perf_counter() - started
                assert result["state"] == "succeeded"
                if i >= WARMUP_ROUNDS:  # warm-up rounds excluded
                    via.append(elapsed)
    finally:
        gateway.stop()
    p50_direct, p50_via = statistics.median(direct), statistics.median(via)
    return {
        "rounds": rounds,
        "warmup_rounds": WARMUP_ROUNDS,
        "direct_p50_ms": 1000 * p50_direct,
        "gateway_p50_ms": 1000 * p50_via,
        "added_p50_ms": 1000 * (p50_via - p50_direct),
        "gateway_p99_ms": 1000 * sorted(via)[int(0.99 * (len(via) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=6.0, help="tasks per second per user")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        load = throughput(Path(tmp) / "load", args.users, args.duration, args.rate)
        latency = added_latency(Path(tmp) / "latency", args.rounds)
    print(
        f"throughput at {load['users']} users "
        f"({load['offered_tasks_per_s']:.0f} tasks/s offered, {args.duration:.0f} s)"
    )
    print(f"  accepted jobs/s      {load['accepted_jobs_per_s']:8.1f}   (target >= 200)")
    print(
        f"  submit p50 / p99     {load['submit_p50_ms']:5.0f} / {load['submit_p99_ms']:.0f} ms"
        "   (target p99 <= 250)"
    )
    print(f"  all requests/s, p99  {load['all_requests_per_s']:8.1f}, {load['all_requests_p99_ms']:.0f} ms")
    print(f"  429s, failures       {load['overload_429']}, {load['unexpected_failures']}")
    print(
        f"added latency, one job at a time ({latency['rounds']} rounds after "
        f"{latency['warmup_rounds']} warm-up rounds, on both sides)"
    )
    print(f"  backend directly p50 {latency['direct_p50_ms']:8.3f} ms")
    print(f"  via gateway p50      {latency['gateway_p50_ms']:8.3f} ms (submit + long-poll result)")
    print(f"  added p50            {latency['added_p50_ms']:8.3f} ms   (target <= 5)")
    (REPO / "benchmarks" / "gateway.json").write_text(
        json.dumps({"load": load, "latency": latency}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
