"""A run meant for the QPU never succeeds on the CPU without saying so (issue 13, part 1).

Configuration errors stop the run before any subexperiment, with exit 2 and the
gateway's own reason; transient failures fail over only as --failover allows; a run
that did fail over warns, and exits 3 under --strict; --failover never keeps what
finished for a --resume that ends bitwise equal to an undisturbed run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from qhybrid.backends import GatewaySettings
from qhybrid.errors import RunFailed
from qhybrid.pipeline.execute import execute
from qhybrid.pipeline.generate import generate
from qhybrid.pipeline.rundir import RunDir
from qhybrid.spec import RunSpec
from tests.conftest import REPO, run_cli
from tests.gateway.conftest import GatewayProcess, free_port
from tests.scenarios.test_bad_input import assert_clean_failure
from tests.scenarios.test_qpu_branch import SHOTS, TOKEN, gateway_config

QPU_RUN = ("run", "cutting", "--policy", "width", "--mode", "sampled", "--shots", str(SHOTS), "--seed", "3")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """One gateway for the configuration-error cases: the workflow client may use only aer."""
    root = tmp_path_factory.mktemp("gateway")
    process = GatewayProcess(root, gateway_config(backends=["aer"])).start()
    yield process
    process.stop()


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "gateway.token"
    path.write_text(TOKEN + "\n")
    return path


def qpu_run(url, token_file, out, *extra):
    return run_cli(
        *QPU_RUN, "--gateway-url", url, "--gateway-token-file", str(token_file), "--out", str(out), *extra
    )


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("wrong token", ["--gateway-token-file", "401", "invalid_token"]),
        ("unknown backend", ["--gateway-backend", "has no backend 'ibm_nowhere'", "'aer'"]),
        ("forbidden backend", ["--gateway-backend", "403 forbidden", "'fake_manila'"]),
        ("unreachable url", ["--gateway-url", "cannot reach the gateway", "gave up after"]),
        ("unreadable token file", ["--gateway-token-file", "cannot read", "No such file"]),
    ],
)
def test_configuration_errors_stop_the_run_before_any_subexperiment(
    gateway, tmp_path, token_file, case, fragments
):
    url, extra = gateway.url, ["--gateway-backend", "aer"]
    if case == "wrong token":
        token_file.write_text("not-the-token-" + "x" * 32)
    elif case == "unknown backend":
        extra = ["--gateway-backend", "ibm_nowhere"]
    elif case == "forbidden backend":
        extra = ["--gateway-backend", "fake_manila"]
    elif case == "unreachable url":
        url, extra = f"http://127.0.0.1:{free_port()}", ["--gateway-max-attempts", "2"]
    else:
        token_file = tmp_path / "missing.token"
    out = tmp_path / "run"
    assert_clean_failure(qpu_run(url, token_file, out, *extra), *fragments)
    assert not out.exists()  # nothing ran, nothing was written


def run_until_first_result_then_kill(
    gateway: GatewayProcess, args: list[str], out
) -> subprocess.CompletedProcess:
    """Start ``qhybrid ARGS``, kill -9 the gateway once the first result file lands, wait for the run."""
    process = subprocess.Popen(
        [sys.executable, "-m", "qhybrid", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "results").is_dir() and any((out / "results").iterdir()):
            gateway.kill9()
            break
        time.sleep(0.05)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def test_failover_never_keeps_results_for_a_resume_bitwise_equal_to_an_undisturbed_run(tmp_path, token_file):
    common = ["--gateway-backend", "aer", "--gateway-max-attempts", "2", "--batch-size", "64"]
    (tmp_path / "g1").mkdir()
    (tmp_path / "g2").mkdir()
    undisturbed_gateway = GatewayProcess(tmp_path / "g1", gateway_config()).start()
    try:
        reference = qpu_run(undisturbed_gateway.url, token_file, tmp_path / "reference", *common, "--json")
    finally:
        undisturbed_gateway.stop()
    assert reference.returncode == 0, reference.stderr
    expected = json.loads(reference.stdout)

    gateway = GatewayProcess(tmp_path / "g2", gateway_config()).start()
    out = tmp_path / "killed"
    try:
        args = [*QPU_RUN, "--gateway-url", gateway.url, "--gateway-token-file", str(token_file)]
        killed = run_until_first_result_then_kill(
            gateway, [*args, "--out", str(out), *common, "--failover", "never"], out
        )
        assert killed.returncode == 1, killed.stderr
        line = [x for x in killed.stderr.splitlines() if x.startswith("qhybrid: error:")]
        assert len(line) == 1 and "--failover never" in line[0] and f"--resume {out}" in line[0]
        assert "cannot reach the gateway" in line[0]
        kept = len(list((out / "results").iterdir()))
        assert 1 <= kept < 4  # the finished ranges stay
        gateway.start()  # the same port and job database
        resumed = run_cli(*args, "--resume", str(out), *common, "--failover", "never", "--json")
    finally:
        gateway.stop()
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["estimate"] == expected["estimate"] and summary["failed_over"] == 0
    report = json.loads((out / "report.json").read_text())
    assert report["estimate"] == expected["estimate"]
    # Every gateway subexperiment names the gateway job and backend that ran it.
    jobs = report["provenance"]["gateway_jobs"]
    assert [j["subexperiment"] for j in jobs] == list(range(250))
    assert {j["backend"] for j in jobs} == {"aer"} and len({j["job_id"] for j in jobs}) == 4


def test_transient_failures_fail_over_with_a_warning_and_strict_exits_3(tmp_path, token_file):
    gateway = GatewayProcess(tmp_path, gateway_config()).start()
    try:
        settings = GatewaySettings(url=gateway.url, token_file=token_file, backend="aer", max_attempts=2)
        spec = RunSpec(scenario="cutting", mode="sampled", shots=SHOTS, seed=3, policy="width")
        run_dir = RunDir(tmp_path / "run")
        generate(run_dir, spec, gateway=settings)  # the start-up check passes
        execute(run_dir, 0, 64, gateway=settings)
    finally:
        gateway.stop()
    # The gateway is gone mid-run: a transient failure. Under never the batch fails, and keeps range [0, 64).
    with pytest.raises(RunFailed, match="--failover never keeps them from moving"):
        execute(run_dir, 64, 128, gateway=GatewaySettings(**{**settings.__dict__, "failover": "never"}))
    reply = execute(run_dir, 64, 250, gateway=settings)  # transient (the default): fails over to the cpu
    assert not reply["skipped"]
    result = run_cli(
        "run", "cutting", "--resume", str(run_dir.root), "--strict", "--gateway-url", gateway.url,
        "--gateway-token-file", str(token_file),
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    warning = [x for x in result.stderr.splitlines() if x.startswith("qhybrid: warning:")]
    assert len(warning) == 1 and "186 of 250 unique subexperiments failed over from qpu to cpu" in warning[0]
    assert "cannot reach the gateway" in warning[0]
    report = json.loads((run_dir.root / "report.json").read_text())
    assert all(f["transient"] for f in report["provenance"]["failovers"])
    assert len(report["provenance"]["gateway_jobs"]) == 64


def test_a_refusal_mid_run_fails_over_only_under_always(tmp_path, token_file):
    # Room for two of the four 64-circuit jobs: later jobs get a 403 (not transient).
    gateway = GatewayProcess(tmp_path, gateway_config(shot_budget=128 * SHOTS)).start()
    try:
        url = gateway.url
        base = ["--gateway-backend", "aer", "--batch-size", "64", "--quiet"]
        refused = qpu_run(url, token_file, tmp_path / "transient", *base)
        always = qpu_run(url, token_file, tmp_path / "always", *base, "--failover", "always", "--json")
    finally:
        gateway.stop()
    assert refused.returncode == 1, refused.stderr
    assert "shot budget exceeded" in refused.stderr and "--failover transient" in refused.stderr
    assert always.returncode == 0, always.stderr
    assert json.loads(always.stdout)["failed_over"] == 122
    assert "qhybrid: warning: 122 of 250" in always.stderr


def test_policy_qpu_puts_everything_on_the_gateway(tmp_path, token_file):
    gateway = GatewayProcess(tmp_path, gateway_config()).start()
    try:
        result = run_cli(
            "run", "cutting", "--policy", "qpu", "--mode", "sampled", "--shots", "64", "--qubits", "6",
            "--gateway-url", gateway.url, "--gateway-token-file", str(token_file), "--gateway-backend", "aer",
            "--out", str(tmp_path / "run"), "--json",
        )  # fmt: skip
        listing = run_cli(
            "gateway", "jobs", "--gateway-url", gateway.url, "--gateway-token-file", str(token_file), "--all"
        )
    finally:
        gateway.stop()
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert set(report["provenance"]["backend_per_subexperiment"]) == {"qpu"}
    job_ids = {j["job_id"] for j in report["provenance"]["gateway_jobs"]}
    assert listing.returncode == 0, listing.stderr
    assert {line.split()[0] for line in listing.stdout.splitlines()} == job_ids
    assert all("succeeded" in line for line in listing.stdout.splitlines())
