"""OpenQASM 3 is parsed in worker processes whose time and memory budgets are enforced, not advised."""

from __future__ import annotations

import threading
import time

import pytest

from qhybrid.gateway.parse_pool import ParsePool
from qhybrid.gateway.payload import PayloadError
from tests.gateway.conftest import auth, base_config, in_process

HEADER = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[5] q;\nbit[5] c;\n'


def slow_text(lines: int) -> str:
    """Within every pre-scan limit, but seconds of parser time: rz with distinct angles, one per line."""
    return HEADER + "".join(f"rz({i}.5) q[{i % 5}];\n" for i in range(lines)) + "c = measure q;\n"


def test_a_parse_over_its_time_budget_is_killed_and_refused_naming_the_budget():
    pool = ParsePool(workers=1, seconds=1, memory_mib=512)
    try:
        pool.warm()
        started = time.monotonic()
        with pytest.raises(PayloadError) as refused:
            pool.parse([slow_text(19_000)], max_qubits=64, max_operations=20_000)
        assert time.monotonic() - started < 5  # the budget (1 s) plus killing a process, not the ~5 s parse
        assert refused.value.status == 413 and "the budget of 1 s" in refused.value.message
        assert pool.replaced == 1
        # The pool goes on with a fresh worker.
        [circuit] = pool.parse([slow_text(10)], max_qubits=64, max_operations=20_000)
        assert circuit.num_qubits == 5 and len(circuit.data) == 15
    finally:
        pool.close()


def test_a_parse_over_its_memory_budget_is_refused_and_its_memory_given_back():
    pool = ParsePool(workers=1, seconds=60, memory_mib=8)
    try:
        with pytest.raises(PayloadError) as refused:
            pool.parse([slow_text(19_000)], max_qubits=64, max_operations=20_000)
        assert refused.value.status == 413 and "memory budget" in refused.value.message
        assert "8 MiB" in refused.value.message
        assert pool.replaced == 1  # that worker is gone, with whatever it had allocated
    finally:
        pool.close()


def test_healthz_answers_while_a_long_parse_runs(tmp_path):
    data = base_config(limits={"parse_seconds": 30})
    with in_process(tmp_path, data) as (client, gateway):
        gateway.parser.warm()
        body = {
            "job_key": "slow",
            "shots": 10,
            "format": "qasm3",
            "circuits": [slow_text(8_000)],
            "backend": "aer",
        }
        answer: dict[str, object] = {}
        submit = threading.Thread(
            target=lambda: answer.update(r=client.post("/v1/jobs", json=body, headers=auth("alice")))
        )
        submit.start()
        time.sleep(0.3)  # the parse (about 2 s) is under way in a worker process
        health = [client.get("/healthz").status_code for _ in range(20)]
        still_parsing = submit.is_alive()
        submit.join(60)
        assert still_parsing and health == [200] * 20
        assert answer["r"].status_code == 202  # type: ignore[attr-defined]
