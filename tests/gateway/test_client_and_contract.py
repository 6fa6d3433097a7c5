"""The worker-side client's retry rules, and the contract with the blueprint (args, port, paths, Secret)."""

from __future__ import annotations

import httpx
import pytest
import typer
import yaml

from qhybrid.blueprint import gateway as blueprint_gateway
from qhybrid.blueprint import names as blueprint_names
from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.kueue import kueue_objects
from qhybrid.cli.gateway import gateway_app
from qhybrid.gateway.client import GatewayClient, GatewayError
from tests.gateway.conftest import in_process

SECRET = "worker-token-123456789"
PASTED = "raw-secret-token"


def make_client(tmp_path, handler, **kwargs):
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n")
    sleeps: list[float] = []
    client = GatewayClient(
        "http://gateway.test",
        token_file,
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
        jitter_seed=1,
        **kwargs,
    )
    return client, sleeps


def test_retries_transient_failures_and_honours_retry_after(tmp_path):
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "3"}, json={"error": "queue_full", "detail": "full"}),
            httpx.Response(503, json={"error": "x", "detail": "y"}),
            httpx.Response(202, json={"id": "j1"}),
        ]
    )
    seen = []

    def handler(request):
        seen.append(request.headers["Authorization"])
        return next(answers)

    client, sleeps = make_client(tmp_path, handler)
    assert client.submit("qpy", shots=1, job_key="k")["id"] == "j1"
    assert seen == [f"Bearer {SECRET}"] * 3
    assert sleeps[0] >= 3.0  # Retry-After is a floor
    assert 0 <= sleeps[1] <= 0.5  # full jitter under base * 2**1
    assert client.retries == 2


def test_connection_errors_give_up_after_max_attempts_with_a_clean_message(tmp_path):
    def handler(request):
        raise httpx.ConnectError("refused")

    client, sleeps = make_client(tmp_path, handler, max_attempts=4, backoff_base=0.1, backoff_cap=0.3)
    with pytest.raises(GatewayError, match="gave up after 4 attempts: cannot reach the gateway") as error:
        client.backends()
    assert len(sleeps) == 3 and all(0 <= s <= 0.3 for s in sleeps)
    assert SECRET not in str(error.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413])
def test_client_errors_are_final_at_once(tmp_path, status):
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(status, json={"error": "nope", "detail": "refused"})

    client, sleeps = make_client(tmp_path, handler)
    with pytest.raises(GatewayError) as error:
        client.submit("qpy", shots=1, job_key="k")
    assert error.value.status == status and calls == [1] and sleeps == []
    assert SECRET not in str(error.value)


def test_token_file_is_reread_when_rotated(tmp_path):
    seen = []

    def handler(request):
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json={"backends": [], "limits": {}})

    client, _ = make_client(tmp_path, handler)
    client.backends()
    replacement = tmp_path / "token.new"
    replacement.write_text("rotated-token")
    replacement.replace(tmp_path / "token")
    client.backends()
    assert seen == [f"Bearer {SECRET}", "Bearer rotated-token"]


@pytest.mark.parametrize("stack", ["kind", "eks"])
def test_blueprint_deployment_args_are_accepted_by_serve(stack):
    config = load_stack_file(stack)
    deployment = blueprint_gateway.deployment(config)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[:2] == ["gateway", "serve"]
    command = typer.main.get_command(gateway_app)
    context = command.make_context("gateway", list(args), resilient_parsing=False)
    sub = command.get_command(context, "serve")
    parsed = sub.make_context("serve", list(args[2:]))
    assert parsed.params["port"] == container["ports"][0]["containerPort"]
    assert str(parsed.params["credentials_dir"]) == blueprint_names.GATEWAY_CREDENTIALS_MOUNT
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(parsed.params["state_dir"]) in mounts  # the only writable place besides /tmp
    assert parsed.params["host"] == "0.0.0.0"
    # --config names the file the blueprint's ConfigMap mounts, and that file parses.
    config_map = blueprint_gateway.config_map(config)
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "config"]
    [file_name] = config_map["data"]
    assert str(parsed.params["config"]) == f"{mount['mountPath']}/{file_name}"
    from qhybrid.gateway.config import parse_config

    parsed_config = parse_config(yaml.safe_load(config_map["data"][file_name]), source="ConfigMap")
    assert [b.name for b in parsed_config.backends] == ["aer", "fake_manila"]
    assert parsed_config.synchronous == "FULL"
    # One number, two places: the pods the qpu queue admits at once = jobs each backend runs at once.
    [qpu_queue] = [q for q in kueue_objects(config) if q["metadata"]["name"] == "cq-qpu"]
    [resources] = [g["flavors"][0]["resources"] for g in qpu_queue["spec"]["resourceGroups"]]
    pods = next(r["nominalQuota"] for r in resources if r["name"] == "pods")
    assert pods == config.qpu_quota_pods
    assert {b.concurrency for b in parsed_config.backends} == {pods}


def test_probe_and_metrics_paths_exist(tmp_path):
    config = load_stack_file("kind")
    container = blueprint_gateway.deployment(config)["spec"]["template"]["spec"]["containers"][0]
    with in_process(tmp_path) as (client, _):
        for probe in ("readinessProbe", "livenessProbe"):
            assert client.get(container[probe]["httpGet"]["path"]).status_code == 200
        assert client.get(blueprint_names.GATEWAY_METRICS_PATH).status_code == 200


def test_new_token_and_hash_token_commands(tmp_path):
    from typer.testing import CliRunner

    from qhybrid.gateway.auth import hash_token
    from qhybrid.gateway.config import parse_config

    runner = CliRunner()
    token_file = tmp_path / "client.token"
    minted = runner.invoke(gateway_app, ["new-token", "--out", str(token_file), "--name", "wf"])
    assert minted.exit_code == 0, minted.output
    token = token_file.read_text().strip()
    assert token not in minted.output and oct(token_file.stat().st_mode & 0o777) == "0o600"
    entry = __import__("yaml").safe_load(minted.output)
    assert entry == [{"name": "wf", "token_sha256": hash_token(token)}]
    parse_config({"backends": ["trivial"], "clients": entry})  # the printed entry is valid config
    hashed = runner.invoke(gateway_app, ["hash-token", "--token-file", str(token_file)])
    assert hashed.output.strip() == hash_token(token)
    again = runner.invoke(gateway_app, ["new-token", "--out", str(token_file)])
    assert again.exit_code == 2 and token_file.read_text().strip() == token


def test_config_errors_name_the_key_and_never_echo_a_pasted_token():
    from qhybrid.errors import InputError
    from qhybrid.gateway.config import default_config, parse_config

    assert [b.name for b in default_config().backends] == ["aer", "fake_manila"]
    cases = [
        ({"backends": ["emulator"]}, "backends[0]"),
        ({"backends": [{"name": "x", "kind": "warp"}]}, "backends[0].kind"),
        (
            {"backends": ["aer"], "clients": [{"name": "c", "token_sha256": PASTED}]},
            "token_sha256",
        ),
        ({"backends": ["aer"], "default_backend": "nope"}, "default_backend"),
        ({"backends": ["aer"], "queue": {"max_queued_jobs": 0}}, "queue.max_queued_jobs"),
        ({"backends": ["aer"], "limits": {"max_shots": "many"}}, "limits.max_shots"),
        ({"backends": ["aer"], "surprise": 1}, "unknown keys"),
    ]
    for data, fragment in cases:
        with pytest.raises(InputError) as error:
            parse_config(data)
        assert fragment in str(error.value)
        assert PASTED not in str(error.value)
