"""What a QuantumJob adds to a run: the shot budget, run options, and the operator's kopf settings."""

from __future__ import annotations

import pytest
import yaml

from qhybrid.errors import InputError
from qhybrid.operator.handlers import backoff_s, connection_info, not_final, settings
from qhybrid.workflow.build import RunOptions
from tests.conftest import invoke


def test_generate_refuses_a_plan_over_its_shot_budget_and_writes_nothing(tmp_path):
    # The reference workload under the qpu policy: 250 unique subexperiments x 100 shots = 25,000 QPU shots.
    base = [
        "step",
        "generate",
        "--policy",
        "qpu",
        "--mode",
        "sampled",
        "--shots",
        "100",
        "--no-check-backends",
    ]
    over = invoke(*base, "--out", str(tmp_path / "over"), "--shot-budget", "24999")
    assert over.exit_code == 2
    assert "--shot-budget: the plan sends 250 unique subexperiments x 100 shots = 25000 shots" in over.stderr
    assert not (tmp_path / "over").exists()
    within = invoke(*base, "--out", str(tmp_path / "within"), "--shot-budget", "25000")
    assert within.exit_code == 0, within.stderr


def test_cpu_subexperiments_spend_no_shot_budget(tmp_path):
    result = invoke("step", "generate", "--out", str(tmp_path / "run"), "--shot-budget", "1")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    ("options", "field"),
    [({"failover": "sometimes"}, "--failover"), ({"shot_budget": 0}, "--shot-budget")],
)
def test_run_options_refuse_bad_values_naming_the_flag(options, field):
    with pytest.raises(InputError) as refused:
        RunOptions(**options)
    assert refused.value.field == field


def test_kopf_runs_namespaced_standalone_with_annotations_for_its_progress():
    chosen = settings()
    assert chosen.scanning.disabled  # no namespace or CRD listing: no ClusterRole needed
    assert type(chosen.persistence.progress_storage).__name__ == "AnnotationsProgressStorage"
    assert type(chosen.persistence.diffbase_storage).__name__ == "AnnotationsDiffBaseStorage"


def test_backoff_doubles_up_to_five_minutes():
    assert [backoff_s(n) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_s(40) == 300.0


def test_the_timer_follows_only_jobs_that_are_not_final():
    assert not_final(None) and not_final({}) and not_final({"phase": "Running"})
    assert not not_final({"phase": "Succeeded"}) and not not_final({"phase": "Failed"})


def test_kopf_logs_in_with_the_kubeconfig_the_operator_was_given(tmp_path):
    from kubernetes import client, config

    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority": str(ca)},
                    }
                ],
                "users": [{"name": "u", "user": {"token": "operator-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    info = connection_info(configuration)
    assert info.server == "https://127.0.0.1:6443"
    assert (info.scheme, info.token) == ("Bearer", "operator-token")
    assert info.ca_path == str(ca) and info.insecure is False
