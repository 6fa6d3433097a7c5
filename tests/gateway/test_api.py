"""Every endpoint and every admission error, in process."""

from __future__ import annotations

import base64
import time

import pytest
from qiskit import QuantumCircuit, qasm3

from qhybrid.blueprint.monitoring import metric_names
from tests.gateway.conftest import auth, base_config, bell, flips, in_process, job_body


def wait_result(client, job_id, who="alice"):
    response = client.get(f"/v1/jobs/{job_id}/result", params={"wait": 30}, headers=auth(who))
    assert response.status_code == 200, response.text
    return response.json()


def metric_value(http, name, **labels):
    text = http.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, rest = series.partition("{")
        found = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if metric == name and found == want:
            return float(value)
    raise AssertionError(f"{name}{{{want}}} not exported")


def test_probes_and_metrics_exist_at_zero(gateway):
    client, _ = gateway
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    text = client.get("/metrics").text
    for metric in metric_names.GATEWAY_METRICS:
        if metric.name != metric_names.GATEWAY_CALIBRATION_AGE_SECONDS:  # no backend here has a calibration
            assert metric.name in text, metric.name
    assert metric_value(client, metric_names.GATEWAY_JOBS_TOTAL, backend="aer", state="failed") == 0
    assert metric_value(client, metric_names.GATEWAY_AUTH_FAILURES_TOTAL, reason="missing_token") == 0
    assert metric_value(client, metric_names.GATEWAY_PROVIDER_AUTH_FAILURES_TOTAL) == 0
    assert metric_value(client, metric_names.GATEWAY_SHOTS_TOTAL, client="bob", backend="slow") == 0
    assert metric_value(client, metric_names.GATEWAY_JOBS_ACTIVE, state="queued") == 0


def test_backends_list_properties_and_queue_depth(gateway):
    client, _ = gateway
    listing = client.get("/v1/backends", headers=auth("bob")).json()
    by_name = {b["name"]: b for b in listing["backends"]}
    assert set(by_name) == {"trivial", "aer", "slow"}
    assert by_name["aer"]["qubits"] == 30 and "cx" in by_name["aer"]["basis_gates"]
    assert by_name["aer"]["allowed"] is False and by_name["trivial"]["allowed"] is True
    assert by_name["trivial"]["default"] is True
    assert {"queue_depth", "running", "calibration_age_seconds", "concurrency"} <= set(by_name["slow"])
    assert listing["limits"]["max_circuits_per_job"] == 300


def test_submit_status_result_and_deterministic_counts(gateway):
    client, _ = gateway
    response = client.post(
        "/v1/jobs", json=job_body("k1", [flips("101"), flips("011")]), headers=auth("alice")
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] == "queued" and response.headers["Location"] == f"/v1/jobs/{job['id']}"
    final = wait_result(client, job["id"])
    assert final["state"] == "succeeded" and final["completions"] == 1
    # bit j of the outcome is classical bit j: "101" (qubit 0 first) is 0b101, "011" is 0b110.
    assert [r["counts"] for r in final["result"]["results"]] == [{"0x5": 100}, {"0x6": 100}]
    status = client.get(f"/v1/jobs/{job['id']}", headers=auth("alice")).json()
    assert status["state"] == "succeeded" and "result" not in status


def test_aer_same_job_same_counts_and_seeds_matter(gateway):
    client, _ = gateway

    def counts(key, seed):
        body = job_body(key, [bell()], backend="aer", shots=2000, seed=seed)
        job = client.post("/v1/jobs", json=body, headers=auth("alice")).json()
        return wait_result(client, job["id"])["result"]["results"][0]["counts"]

    first, again, other = counts("a", 7), counts("b", 7), counts("c", 8)
    assert first == again
    assert first != other
    assert set(first) == {"0x0", "0x3"} and sum(first.values()) == 2000


def test_openqasm3_and_per_circuit_seeds(gateway):
    client, _ = gateway
    body = {
        "job_key": "qasm",
        "shots": 500,
        "format": "qasm3",
        "backend": "aer",
        "circuits": [qasm3.dumps(bell()), qasm3.dumps(bell())],
        "seeds": [11, 11],
    }
    job = client.post("/v1/jobs", json=body, headers=auth("alice")).json()
    results = wait_result(client, job["id"])["result"]["results"]
    assert results[0]["counts"] == results[1]["counts"]  # same seed, same circuit
    assert [r["seed"] for r in results] == [11, 11]


def test_idempotent_resubmission_and_key_conflict(gateway):
    client, gw = gateway
    first = client.post("/v1/jobs", json=job_body("same"), headers=auth("alice"))
    again = client.post("/v1/jobs", json=job_body("same"), headers=auth("alice"))
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    conflict = client.post("/v1/jobs", json=job_body("same", shots=7), headers=auth("alice"))
    assert conflict.status_code == 409 and conflict.json()["error"] == "job_key_conflict"
    # Keys are per client: bob's "same" is another job.
    other = client.post("/v1/jobs", json=job_body("same"), headers=auth("bob"))
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    assert gw.store.counts() in (
        {"queued": 2},
        {"succeeded": 2},
        {"queued": 1, "succeeded": 1},
        {"running": 1, "succeeded": 1},
        {"queued": 1, "running": 1},
        {"running": 2},
    )


def post(client, body, who="alice", **kwargs):
    return client.post("/v1/jobs", json=body, headers=auth(who), **kwargs)


def assert_error(response, status, code, *fragments):
    assert response.status_code == status, response.text
    data = response.json()
    assert data["error"] == code, data
    for fragment in fragments:
        assert fragment in data["detail"], data


def test_malformed_requests_get_400_naming_the_problem(gateway):
    client, _ = gateway
    assert_error(
        post(client, job_body("x", circuits=None) | {"circuits": "%%%"}), 400, "malformed_circuits", "base64"
    )
    junk = base64.b64encode(b"QISKIT-not-really").decode()
    assert_error(post(client, job_body("x") | {"circuits": junk}), 400, "malformed_circuits", "QPY")
    bad_qasm = {"job_key": "x", "shots": 10, "format": "qasm3", "circuits": ["OPENQASM 3; qubit q; bogus q;"]}
    assert_error(post(client, bad_qasm), 400, "malformed_circuits", "circuits[0]", "bogus")
    assert_error(post(client, job_body("x", shots=0)), 400, "invalid_request", "shots")
    assert_error(post(client, job_body("x", shots=10**6)), 400, "too_many_shots", "100000")
    assert_error(post(client, job_body("x", colour="red")), 400, "invalid_request", "colour")
    assert_error(post(client, job_body("x", backend="nope")), 400, "unknown_backend", "nope")
    assert_error(post(client, job_body("x", seeds=[1, 2])), 400, "invalid_request", "seeds")
    unmeasured = QuantumCircuit(1)
    unmeasured.x(0)
    assert_error(
        post(client, job_body("x", [flips("1"), unmeasured])), 400, "malformed_circuits", "circuits[1]"
    )
    rotation = QuantumCircuit(1, 1)
    rotation.h(0)
    rotation.measure(0, 0)
    assert_error(post(client, job_body("x", [rotation])), 400, "unsupported_gates", "'h'")
    assert client.post("/v1/jobs", content=b"{not json", headers=auth("alice")).status_code == 400


def test_size_limits_get_413(tmp_path):
    data = base_config(
        limits={"max_request_bytes": 20000, "max_circuits_per_job": 3, "max_operations_per_circuit": 50}
    )
    with in_process(tmp_path, data) as (client, _):
        assert_error(
            post(client, job_body("x", [flips("1")] * 4)), 413, "too_many_circuits", "4 circuits", "3"
        )
        deep = QuantumCircuit(1, 1)
        for _ in range(60):
            deep.x(0)
        deep.measure(0, 0)
        assert_error(post(client, job_body("x", [deep])), 413, "circuit_too_large", "61 operations")
        huge = job_body("x") | {"circuits": "A" * 30000}
        assert_error(post(client, huge), 413, "payload_too_large", "20000")
        # Without a Content-Length (chunked), the body is cut off while it streams in.
        chunks = iter([b'{"job_key": "x", "circuits": "', b"A" * 25000, b'"}'])
        assert_error(client.post("/v1/jobs", content=chunks, headers=auth("alice")), 413, "payload_too_large")


def test_queue_bound_answers_429_with_retry_after(tmp_path):
    data = base_config(queue={"max_queued_jobs": 2, "retry_after_seconds": 3})
    with in_process(tmp_path, data) as (client, _):
        codes = [post(client, job_body(f"k{i}", backend="slow")).status_code for i in range(6)]
        assert codes.count(429) >= 3, codes
        refused = post(client, job_body("late", backend="slow"))
        assert_error(refused, 429, "queue_full", "2 jobs")
        assert refused.headers["Retry-After"] == "3"
        # A known key is answered even when the queue is full.
        assert post(client, job_body("k0", backend="slow")).status_code == 200


def test_shot_budget_is_a_clear_403_and_cancel_refunds(gateway):
    client, _ = gateway
    first = post(client, job_body("b1", [flips("1")] * 2, shots=1000, backend="slow"), who="bob")
    second = post(client, job_body("b2", [flips("1")] * 2, shots=500, backend="slow"), who="bob")
    assert first.status_code == 202 and second.status_code == 202
    over = post(client, job_body("b3", shots=1), who="bob")
    assert_error(over, 403, "shot_budget_exceeded", "budget of 3000 shots", "used 3000", "needs 1")
    assert client.get("/v1/budget", headers=auth("bob")).json() == {
        "client": "bob",
        "shot_budget": 3000,
        "shots_used": 3000,
    }
    cancelled = client.delete(f"/v1/jobs/{second.json()['id']}", headers=auth("bob"))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert client.get("/v1/budget", headers=auth("bob")).json()["shots_used"] == 2000
    # The metrics say the same, read from the store at scrape time; alice has no budget, so no series.
    text = client.get("/metrics").text
    assert f'{metric_names.GATEWAY_SHOT_BUDGET}{{client="bob"}} 3000.0' in text
    assert f'{metric_names.GATEWAY_SHOT_BUDGET_REMAINING}{{client="bob"}} 1000.0' in text
    assert f'{metric_names.GATEWAY_SHOT_BUDGET}{{client="alice"}}' not in text
    assert post(client, job_body("b3", shots=1), who="bob").status_code == 202
    done = wait_result(client, first.json()["id"], who="bob")
    assert done["state"] == "succeeded"
    again = client.delete(f"/v1/jobs/{first.json()['id']}", headers=auth("bob"))
    assert_error(again, 409, "not_cancellable", "succeeded")


def test_auth_errors_and_their_metrics(gateway):
    client, _ = gateway
    missing = client.get("/v1/backends")
    assert_error(missing, 401, "missing_token", "Bearer")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/v1/backends", headers={"Authorization": "Bearer not-a-token"})
    assert_error(wrong, 401, "invalid_token")
    assert "not-a-token" not in wrong.text
    assert_error(client.get("/v1/backends", headers={"Authorization": "Basic abc"}), 401, "missing_token")
    assert_error(client.get("/v1/backends", headers=auth("carol")), 401, "invalid_token", "expired")
    forbidden = post(client, job_body("f", backend="aer"), who="bob")
    assert_error(forbidden, 403, "forbidden", "bob", "aer")
    assert metric_value(client, metric_names.GATEWAY_AUTH_FAILURES_TOTAL, reason="missing_token") == 2
    assert metric_value(client, metric_names.GATEWAY_AUTH_FAILURES_TOTAL, reason="invalid_token") == 2
    assert metric_value(client, metric_names.GATEWAY_AUTH_FAILURES_TOTAL, reason="forbidden") == 1


def test_jobs_are_private_to_their_client(gateway):
    client, _ = gateway
    job = post(client, job_body("mine")).json()
    assert_error(client.get(f"/v1/jobs/{job['id']}", headers=auth("bob")), 404, "not_found")
    assert_error(client.get(f"/v1/jobs/{job['id']}/result", headers=auth("bob")), 404, "not_found")
    assert_error(client.delete(f"/v1/jobs/{job['id']}", headers=auth("bob")), 404, "not_found")
    assert_error(client.get("/v1/jobs/nope", headers=auth("alice")), 404, "not_found")


def test_result_long_poll_returns_202_while_running(gateway):
    client, _ = gateway
    job = post(client, job_body("lp", backend="slow")).json()
    started = time.monotonic()
    early = client.get(f"/v1/jobs/{job['id']}/result", params={"wait": 0.05}, headers=auth("alice"))
    assert early.status_code == 202 and early.headers["Retry-After"] == "1"
    assert early.json()["state"] in ("queued", "running")
    final = wait_result(client, job["id"])
    assert final["state"] == "succeeded"
    assert time.monotonic() - started < 10


def test_metrics_count_jobs_shots_latency_and_queue(gateway):
    client, _ = gateway
    for i in range(3):
        wait_result(client, post(client, job_body(f"m{i}", [flips("1")] * 2, shots=10)).json()["id"])
    assert metric_value(client, metric_names.GATEWAY_JOBS_TOTAL, backend="trivial", state="succeeded") == 3
    assert metric_value(client, metric_names.GATEWAY_SHOTS_TOTAL, client="alice", backend="trivial") == 60
    assert metric_value(client, metric_names.GATEWAY_JOB_LATENCY_SECONDS + "_count", backend="trivial") == 3
    assert metric_value(client, metric_names.GATEWAY_QUEUE_DEPTH, backend="trivial") == 0
    assert (
        metric_value(
            client,
            metric_names.GATEWAY_REQUEST_DURATION_SECONDS + "_count",
            route="/v1/jobs",
            method="POST",
            status="202",
        )
        == 3
    )


def test_emulated_device_transpiles_to_its_isa_and_lists_its_calibration_age(tmp_path):
    data = {
        "backends": ["emulator:fake_manila"],
        "clients": [base_config()["clients"][0]],
    }
    with in_process(tmp_path, data) as (client, _):
        listing = client.get("/v1/backends", headers=auth("alice")).json()["backends"][0]
        assert (
            listing["qubits"] == 5
            and "sx" in listing["basis_gates"]
            and listing["calibration_age_seconds"] > 0
        )
        wide = QuantumCircuit(6, 6)
        wide.measure(range(6), range(6))
        assert_error(post(client, job_body("w", [wide])), 400, "too_many_qubits", "6 qubits")
        body = job_body("e", [bell()], shots=4000, seed=5)
        result = wait_result(client, post(client, body).json()["id"])["result"]
        counts = result["results"][0]["counts"]
        assert sum(counts.values()) == 4000
        # Noise puts some weight on 01 and 10, but the Bell outcomes dominate.
        assert counts.get("0x0", 0) + counts.get("0x3", 0) > 3400 and len(counts) > 2
        assert result["properties"]["device"] == "fake_manila"
        # An emulator's calibration is a fixed snapshot: listed, but not exported as the
        # gauge the staleness alert watches (which would otherwise fire forever).
        with pytest.raises(AssertionError, match="not exported"):
            metric_value(client, metric_names.GATEWAY_CALIBRATION_AGE_SECONDS, backend="fake_manila")


def test_every_error_has_one_format_and_the_openapi_declares_the_contract(tmp_path):
    with in_process(tmp_path) as (client, _):
        # FastAPI's own answers (unknown route, wrong method, a bad query parameter) use the error body too.
        missing = client.get("/nowhere")
        assert missing.status_code == 404 and missing.json() == {"error": "not_found", "detail": "Not Found"}
        wrong = client.put("/healthz")
        assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
        bad = client.get("/v1/jobs/x/result", params={"wait": "soon"}, headers=auth("alice"))
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
        assert "wait" in bad.json()["detail"]
        document = client.get("/openapi.json").json()
    submit = document["paths"]["/v1/jobs"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobRequest"
    }
    assert submit["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert set(document["components"]["schemas"]["JobRequest"]["required"]) == {
        "job_key",
        "shots",
        "circuits",
    }
    for path, operations in document["paths"].items():
        for operation in operations.values():
            assert "422" not in operation["responses"], path
            error = operation["responses"]["404"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}


def test_a_job_key_reused_with_another_gate_definition_is_a_conflict_not_the_old_result(gateway):
    # Given one job key and two circuits that differ only in what custom gate foo does,
    client, _ = gateway
    text = (
        'OPENQASM 3.0;\ninclude "stdgates.inc";\ngate foo q {{ {body} q; }}\n'
        "qubit[1] r;\nbit[1] c;\nfoo r[0];\nc[0] = measure r[0];\n"
    )
    identity = {
        "job_key": "foo",
        "shots": 100,
        "format": "qasm3",
        "circuits": [text.format(body="id")],
        "backend": "aer",
    }
    flip = {**identity, "circuits": [text.format(body="x")]}
    first = client.post("/v1/jobs", json=identity, headers=auth("alice"))
    assert first.status_code == 202
    assert wait_result(client, first.json()["id"])["result"]["results"][0]["counts"] == {"0x0": 100}
    # then the second is refused (409), never answered with the first's counts;
    second = client.post("/v1/jobs", json=flip, headers=auth("alice"))
    assert second.status_code == 409 and second.json()["error"] == "job_key_conflict"
    # under its own key it gets its own, right, answer.
    own = client.post("/v1/jobs", json={**flip, "job_key": "foo-x"}, headers=auth("alice"))
    assert wait_result(client, own.json()["id"])["result"]["results"][0]["counts"] == {"0x1": 100}


def test_costly_openqasm_is_refused_with_413_before_parsing_and_health_stays_fast(tmp_path):
    from tests.unit.test_qasm_guard import deep_expression, doubling_gates, huge_register

    with in_process(tmp_path) as (client, gateway):
        for text, limit in (
            (huge_register(), f"the limit of {gateway.max_qubits}"),
            (deep_expression(), "nested more than 64 deep"),
            (doubling_gates(), f"more than {gateway.config.limits.max_operations_per_circuit} operations"),
        ):
            body = {"job_key": f"k{len(text)}", "shots": 10, "format": "qasm3", "circuits": [text]}
            refused = client.post("/v1/jobs", json=body, headers=auth("alice"))
            assert refused.status_code == 413
            assert refused.json()["error"] == "circuit_too_costly" and limit in refused.json()["detail"]
            assert client.get("/healthz").status_code == 200
        assert gateway.max_qubits == 64  # the widest configured backend (trivial)
