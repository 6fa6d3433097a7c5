"""The IBM adapter in qiskit-ibm-runtime's local testing mode, and the job store's exactly-once rules."""

from __future__ import annotations

import threading

from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister

from qhybrid.gateway.store import BudgetExceeded, JobStore, NewJob, QueueFull
from tests.gateway.conftest import auth, base_config, bell, in_process, job_body


def two_registers() -> QuantumCircuit:
    """X on qubits 0 and 2; register a holds qubits 0, 1 and register b holds qubit 2."""
    a, b = ClassicalRegister(2, "a"), ClassicalRegister(1, "b")
    circuit = QuantumCircuit(QuantumRegister(3), a, b)
    circuit.x(0)
    circuit.x(2)
    circuit.measure(0, a[0])
    circuit.measure(1, a[1])
    circuit.measure(2, b[0])
    return circuit


def test_ibm_adapter_local_testing_mode_runs_samplerv2_on_a_fake_device(tmp_path):
    data = base_config(
        backends=[{"name": "ibm_local", "kind": "ibm", "local": "fake_manila"}], default_backend="ibm_local"
    )
    data["clients"] = data["clients"][:1]
    with in_process(tmp_path, data) as (client, _):
        listing = client.get("/v1/backends", headers=auth("alice")).json()["backends"][0]
        assert listing["mode"] == "local testing mode" and listing["qubits"] == 5
        assert listing["calibration_age_seconds"] > 0

        def run(key, seed):
            body = job_body(key, [bell(), two_registers()], shots=2000, seed=seed)
            job = client.post("/v1/jobs", json=body, headers=auth("alice")).json()
            final = client.get(
                f"/v1/jobs/{job['id']}/result", params={"wait": 60}, headers=auth("alice")
            ).json()
            assert final["state"] == "succeeded", final
            return [r["counts"] for r in final["result"]["results"]]

        first, again = run("one", 3), run("two", 3)
        assert first == again  # seeded: the same job gives the same counts
        bell_counts, registers = first
        assert sum(bell_counts.values()) == 2000
        assert bell_counts.get("0x0", 0) + bell_counts.get("0x3", 0) > 1700
        # Joined across registers by classical bit index: a[0]=1, a[1]=0, b[0]=1 -> 0b101.
        assert max(registers, key=registers.get) == "0x5" and registers["0x5"] > 1500


def new_job(key: str, shots: int = 10, circuits: int = 1) -> NewJob:
    return NewJob("alice", key, f"digest-{key}", "trivial", shots, list(range(circuits)), "qpy", b"payload")


def test_claim_is_exactly_once_across_threads(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    status, created = store.admit(new_job("k"), max_queued=10, shot_budget=None)
    assert created
    tokens: list[str | None] = []
    barrier = threading.Barrier(8)

    def claim():
        barrier.wait()
        tokens.append(store.claim(status["id"]))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [t for t in tokens if t is not None]
    assert len(winners) == 1
    assert store.finish(status["id"], "stale-token", {"x": 1}) is None
    finished = store.finish(status["id"], winners[0], {"x": 1})
    assert finished is not None and finished["completions"] == 1
    assert store.finish(status["id"], winners[0], {"x": 2}) is None  # a second finish changes nothing
    assert store.result(status["id"])["result"] == {"x": 1}
    store.close()


def test_recovery_requeues_unfinished_work_and_budget_is_reserved_once(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path)
    running, _ = store.admit(new_job("r", shots=100, circuits=2), max_queued=10, shot_budget=1000)
    queued, _ = store.admit(new_job("q", shots=100, circuits=2), max_queued=10, shot_budget=1000)
    assert store.claim(running["id"]) is not None
    try:
        store.admit(new_job("over", shots=700), max_queued=10, shot_budget=1000)
        raise AssertionError("budget not enforced")
    except BudgetExceeded as over:
        assert (over.used, over.budget, over.cost) == (400, 1000, 700)
    try:
        store.admit(new_job("full"), max_queued=1, shot_budget=None)
        raise AssertionError("queue bound not enforced")
    except QueueFull:
        pass
    store.close()  # as if the process died here

    reopened = JobStore(path)
    requeued, resume = reopened.recover()
    assert requeued == [running["id"]] and resume == []
    assert [job_id for job_id, _ in reopened.ids_in_state("queued")] == [running["id"], queued["id"]]
    assert reopened.status(running["id"])["attempts"] == 1
    assert reopened.shots_reserved("alice") == 400
    token = reopened.claim(running["id"])
    assert token is not None and reopened.fail(running["id"], token, "boom") is not None
    assert reopened.shots_reserved("alice") == 200  # a failed job's shots come back
    reopened.close()
