"""How fast a served gateway refuses costly OpenQASM 3, what it costs in memory, and whether /healthz waits.

    .venv/bin/python benchmarks/bench_qasm_refusals.py

Starts ``qhybrid gateway serve`` on 127.0.0.1 (parse workers warm, as in a pod) and
submits each hostile text of issue 12 once: a ``qubit[3000000]`` register, a
20,000-deep parenthesised expression, and 20 levels of doubling gate definitions
(under 1 KB, a million operations). For each it prints the answer, its time, the
gateway's RSS growth, and the time of a ``/healthz`` call made while it was refused.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import httpx

from qhybrid.gateway.loopback import start_gateway

HEADER = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
TEXTS = {
    "qubit[3000000]": HEADER + "qubit[3000000] q;\n",
    "20,000-deep expression": HEADER + "qubit[1] q;\nrx(" + "(" * 20_000 + "0.1" + ")" * 20_000 + ") q[0];\n",
    "20 levels of doubling gates": "".join(
        [HEADER, "gate g0 a { x a; }\n"]
        + [f"gate g{i} a {{ g{i - 1} a; g{i - 1} a; }}\n" for i in range(1, 21)]
        + ["qubit[1] q;\ng20 q[0];\n"]
    ),
}


def rss_mib(pid: int) -> float:
    """Return a process's resident set size in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def probe_health(url: str, into: dict[str, float]) -> None:
    """Time one /healthz call into ``into``."""
    started = time.perf_counter()
    into["status"] = httpx.get(f"{url}/healthz").status_code
    into["ms"] = (time.perf_counter() - started) * 1000


def main() -> None:
    """Run the three refusals and print one line each."""
    gateway = start_gateway(Path(tempfile.mkdtemp()), max_queued=100, seconds_per_job=0.0, concurrency=1)
    pid = gateway.process.pid
    headers = {"Authorization": f"Bearer {gateway.token_file.read_text().strip()}"}
    try:
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
            client.get("/healthz")
            for name, text in TEXTS.items():
                rss_before = rss_mib(pid)
                health: dict[str, float] = {}
                prober = threading.Thread(target=probe_health, args=(gateway.url, health))
                started = time.perf_counter()
                prober.start()
                body = {"job_key": name, "shots": 10, "format": "qasm3", "circuits": [text]}
                answer = client.post("/v1/jobs", json=body)
                ms = (time.perf_counter() - started) * 1000
                prober.join()
                grown = rss_mib(pid) - rss_before
                print(
                    f"{name:<28} {len(text):>6} B  {answer.status_code} {answer.json()['error']}"
                    f" in {ms:6.1f} ms  RSS +{grown:.1f} MiB"
                    f"  /healthz {health['status']:.0f} in {health['ms']:.1f} ms"
                )
    finally:
        gateway.stop()


if __name__ == "__main__":
    main()
