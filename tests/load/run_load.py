"""Start a gateway on loopback, run locust headless against it with a named load shape, summarise.

    .venv/bin/python tests/load/run_load.py --shape step --duration 20 --users 50 --out runs/load

Writes OUT/summary.json (req/s, p50/p95/p99 per endpoint, accepted jobs/s,
429s, failures by kind) and OUT/load.png, plus locust's CSV files. Against an
existing gateway, pass --url and --token-file instead of letting it start one.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from qhybrid.gateway.loopback import start_gateway

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHAPES = ("constant", "step", "spike")


def _percentiles(row: dict[str, str]) -> dict[str, float]:
    return {
        name: float(row[column] or 0) for name, column in (("p50", "50%"), ("p95", "95%"), ("p99", "99%"))
    }


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Return Prometheus's histogram_quantile over cumulative (upper bound, count) pairs, +Inf last."""
    buckets = sorted(buckets)
    total = buckets[-1][1]
    if total == 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower  # Prometheus answers the last finite bound
            return lower + (bound - lower) * (rank - below) / (count - below) if count > below else bound
        lower, below = bound, count
    return lower


def gateway_submit_buckets(metrics_text: str) -> list[tuple[float, float]]:
    """Sum the gateway's POST /v1/jobs request-duration buckets over every status."""
    from prometheus_client.parser import text_string_to_metric_families

    from qhybrid.blueprint.monitoring.metric_names import GATEWAY_REQUEST_DURATION_SECONDS

    sums: dict[float, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != GATEWAY_REQUEST_DURATION_SECONDS:
            continue
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name.endswith("_bucket")
                and labels["route"] == "/v1/jobs"
                and labels["method"] == "POST"
            ):
                bound = float(labels["le"])
                sums[bound] = sums.get(bound, 0.0) + sample.value
    return sorted(sums.items())


def client_p99_ms(times_file: Path) -> float:
    """Return the exact 99th percentile (nearest rank) of the client's submit times."""
    times = sorted(float(line) for line in times_file.read_text().split())
    if not times:
        return float("nan")
    return times[min(len(times) - 1, max(0, math.ceil(0.99 * len(times)) - 1))]


def summarise(out: Path, duration: float, shape: str, users: int) -> dict[str, Any]:
    """Read locust's CSV files into the summary."""
    with open(out / "locust_stats.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    endpoints = {}
    for row in rows:
        endpoints[row["Name"] if row["Type"] else "Aggregated"] = {
            "requests": int(row["Request Count"]),
            "failures": int(row["Failure Count"]),
            "requests_per_s": float(row["Requests/s"]),
            **_percentiles(row),
        }
    failures: dict[str, int] = {}
    with open(out / "locust_failures.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            kind = f"{row['Method']} {row['Name']}: {row['Error']}"
            failures[kind] = failures.get(kind, 0) + int(row["Occurrences"])
    submit = endpoints.get("POST /v1/jobs", {"requests": 0, "failures": 0})
    overload = endpoints.get("POST /v1/jobs [429 overload]", {"requests": 0})
    aggregated = endpoints.get("Aggregated", {})
    accepted = submit["requests"] - submit["failures"]
    return {
        "shape": shape,
        "users": users,
        "duration_s": duration,
        "requests_per_s": aggregated.get("requests_per_s", 0.0),
        "latency_ms": {k: aggregated.get(k, 0.0) for k in ("p50", "p95", "p99")},
        "submitted_ok": accepted,  # 202 new jobs and 200 resubmissions of a known key
        "accepted_jobs_per_s": endpoints.get("POST /v1/jobs", {}).get("requests_per_s", 0.0),
        "submit_latency_ms": {k: submit.get(k, 0.0) for k in ("p50", "p95", "p99")},
        "overload_429": overload["requests"],
        "failures_by_kind": failures,
        "unexpected_failures": sum(failures.values()),
        "endpoints": endpoints,
    }


def plot(out: Path, summary: dict[str, Any]) -> None:
    """Draw requests/s, failures/s, 429s and p95 over time from locust's history CSV."""
    from matplotlib.figure import Figure

    with open(out / "locust_stats_history.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["Name"] == "Aggregated"]
    if not rows:
        return
    start = float(rows[0]["Timestamp"])
    t = [float(r["Timestamp"]) - start for r in rows]
    figure = Figure(figsize=(8, 5))
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.plot(t, [float(r["Requests/s"]) for r in rows], label="requests/s")
    top.plot(t, [float(r["Failures/s"]) for r in rows], label="failures/s")
    top.plot(t, [float(r["User Count"]) for r in rows], label="users", linestyle="--")
    top.set_ylabel("per second / users")
    top.legend(loc="upper left")
    bottom.plot(t, [float(r["95%"] if r["95%"] != "N/A" else 0) for r in rows], label="p95 (ms)")
    bottom.plot(t, [float(r["50%"] if r["50%"] != "N/A" else 0) for r in rows], label="p50 (ms)")
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("ms")
    bottom.legend(loc="upper left")
    top.set_title(
        f"gateway load, shape {summary['shape']}: {summary['requests_per_s']:.0f} req/s, "
        f"p99 {summary['latency_ms']['p99']:.0f} ms, {summary['overload_429']} x 429, "
        f"{summary['unexpected_failures']} failures"
    )
    figure.savefig(out / "load.png", dpi=90)


def load_circuits(count: int) -> list[Any]:
    """Return ``count`` distinct classical circuits (the trivial backend's gates) of about 40 operations.

    A job of 64 is what a run's QPU batch sends (DEFAULT_CIRCUITS_PER_JOB).
    """
    from qiskit import QuantumCircuit

    circuits = []
    for index in range(count):
        circuit = QuantumCircuit(6, 6)
        for layer in range(4):
            for qubit in range(6):
                if (index + layer) >> qubit & 1:
                    circuit.x(qubit)
            for qubit in range(4):
                circuit.cx(qubit, qubit + 1)
                circuit.ccx(qubit, qubit + 1, qubit + 2)
        circuit.measure(range(6), range(6))
        circuits.append(circuit)
    return circuits


def run(
    out: Path,
    *,
    shape: str = "step",
    duration: float = 20.0,
    users: int = 50,
    rate: float = 5.0,
    url: str | None = None,
    token_file: Path | None = None,
    max_queued: int = 10000,
    seconds_per_job: float = 0.0,
    concurrency: int = 1,
    admissions_in_flight: int | None = None,
    circuits_per_job: int = 1,
) -> dict[str, Any]:
    """Run one load test and return its summary (also written to OUT/summary.json)."""
    from qhybrid.gateway.payload import encode_qpy

    if shape not in SHAPES:
        raise SystemExit(f"--shape must be one of {SHAPES}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "circuits.b64").write_text(encode_qpy(load_circuits(circuits_per_job)))
    gateway = None
    if url is None:
        options = {} if admissions_in_flight is None else {"max_admissions_in_flight": admissions_in_flight}
        gateway = start_gateway(
            out,
            max_queued=max_queued,
            seconds_per_job=seconds_per_job,
            concurrency=concurrency,
            queue_options=options,
        )
        url, token_file = gateway.url, gateway.token_file
    assert token_file is not None
    env = {
        **os.environ,
        "QHYBRID_GATEWAY_TOKEN_FILE": str(token_file),
        "QHYBRID_LOAD_CIRCUITS": str(out / "circuits.b64"),
        "QHYBRID_LOAD_SHAPE": shape,
        "QHYBRID_LOAD_USERS": str(users),
        "QHYBRID_LOAD_DURATION": str(duration),
        "QHYBRID_LOAD_RATE": str(rate),
        "QHYBRID_LOAD_SUBMIT_TIMES": str(out / "submit_times_ms.txt"),
    }
    try:
        result = subprocess.run(
            [
                sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
                "--host", url, "--csv", str(out / "locust"), "--csv-full-history", "--only-summary",
                "--run-time", f"{int(duration) + 15}s", "--stop-timeout", "5", "--exit-code-on-error", "0",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=duration + 120,
        )  # fmt: skip
        (out / "locust.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"locust exited {result.returncode}: {result.stderr[-2000:]}")
        summary = summarise(out, duration, shape, users)
        if gateway is not None:
            import httpx

            metrics = httpx.get(f"{url}/metrics", timeout=10).text
            (out / "gateway_metrics.txt").write_text(metrics)
            # The same statistic on both sides: p99 of every POST /v1/jobs, any status, over
            # the whole run; the client's exact, the gateway's interpolated from its buckets.
            client_ms = client_p99_ms(out / "submit_times_ms.txt")
            gateway_ms = 1000 * histogram_quantile(0.99, gateway_submit_buckets(metrics))
            summary["submit_p99_ms"] = {
                "client": round(client_ms, 2),
                "gateway_histogram": round(gateway_ms, 2),
                "gateway_over_client": round(gateway_ms / client_ms, 3),
            }
            print(
                f"submit p99: client {client_ms:.1f} ms, gateway histogram {gateway_ms:.1f} ms "
                f"(gateway/client {gateway_ms / client_ms:.3f})"
            )
            summary["gateway_metrics"] = [
                line for line in metrics.splitlines()
                if line.startswith(("qhybrid_gateway_jobs_total", "qhybrid_gateway_admission_rejections"))
            ]  # fmt: skip
    finally:
        if gateway is not None:
            gateway.stop()
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    plot(out, summary)
    return summary


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=SHAPES, default="step")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rate", type=float, default=5.0, help="tasks per second per user")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "load")
    parser.add_argument("--url", help="an existing gateway (default: start one on loopback)")
    parser.add_argument("--token-file", type=Path)
    parser.add_argument("--max-queued", type=int, default=10000)
    parser.add_argument("--seconds-per-job", type=float, default=0.0, help="emulated device time per job")
    parser.add_argument("--admissions-in-flight", type=int, help="the gateway's max_admissions_in_flight")
    parser.add_argument("--circuits-per-job", type=int, default=1, help="64 is a run's QPU batch")
    args = parser.parse_args()
    summary = run(
        args.out,
        shape=args.shape,
        duration=args.duration,
        users=args.users,
        rate=args.rate,
        url=args.url,
        token_file=args.token_file,
        max_queued=args.max_queued,
        seconds_per_job=args.seconds_per_job,
        admissions_in_flight=args.admissions_in_flight,
        circuits_per_job=args.circuits_per_job,
    )
    print(
        json.dumps({k: v for k, v in summary.items() if k not in ("endpoints", "gateway_metrics")}, indent=2)
    )
    print(f"wrote {args.out / 'summary.json'} and {args.out / 'load.png'}")


if __name__ == "__main__":
    main()
