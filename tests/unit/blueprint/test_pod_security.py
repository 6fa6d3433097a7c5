"""Pod Security ``restricted``: every pod Argo builds for our workflows meets it, executor ones too.

The checks are the Pod Security Standards' controls (blueprint/pod_security.py); the pods
are what Argo's controller builds from a template and the chart's ``executor`` values
(workflow/pods.py). No cluster and no Argo are needed.
"""

from __future__ import annotations

import copy

import pytest

from qhybrid.blueprint import argo
from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.pod_security import baseline_violations, restricted_violations
from qhybrid.workflow.pods import container_templates, template_pod
from tests.conftest import every_workflow


def workflows(stack: str) -> list[dict]:
    return every_workflow(stack, both_artifact_stores=False)


@pytest.mark.parametrize("stack", ["kind", "eks"])
def test_every_workflow_pod_argo_builds_meets_restricted(stack):
    values = argo.helm_values(load_stack_file(stack))
    checked = 0
    for workflow in workflows(stack):
        for name in container_templates(workflow):
            pod = template_pod(
                workflow, name, executor=values["executor"], main_container=values.get("mainContainer")
            )
            assert [c["name"] for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]] == [
                "init",
                "wait",
                "main",
            ]
            assert restricted_violations(pod["spec"]) == [], (workflow["spec"]["templates"][0]["name"], name)
            checked += 1
    assert checked >= 11  # generate, batches, each branch's execute, reconstruct, report, per policy


def test_without_the_executor_security_context_argos_containers_are_refused():
    # Given the chart values without executor.securityContext (the defect a real API server found),
    values = argo.helm_values(load_stack_file("kind"))
    del values["executor"]["securityContext"]
    workflow = workflows("kind")[0]
    pod = template_pod(workflow, "generate", executor=values["executor"])
    # then the admission plugin's two complaints come back, naming init and wait only.
    assert restricted_violations(pod["spec"]) == [
        'allowPrivilegeEscalation != false (containers "init", "wait" must set '
        "securityContext.allowPrivilegeEscalation=false)",
        'unrestricted capabilities (containers "init", "wait" must set '
        'securityContext.capabilities.drop=["ALL"] and add at most NET_BIND_SERVICE)',
    ]


def restricted_pod() -> dict:
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "main",
                "image": "x",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "token", "projected": {"sources": []}}],
    }


BREAKS = {
    "host namespaces": lambda s: s.update(hostNetwork=True),
    "privileged": lambda s: s["containers"][0]["securityContext"].update(privileged=True),
    "hostPath volumes": lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    "hostPort": lambda s: s["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]),
    "non-default capabilities": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(
        add=["SYS_ADMIN"]
    ),
    "procMount": lambda s: s["containers"][0]["securityContext"].update(procMount="Unmasked"),
    "forbidden sysctls": lambda s: s["securityContext"].update(
        sysctls=[{"name": "kernel.msgmax", "value": "1"}]
    ),
    "seLinuxOptions": lambda s: s["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
}
RESTRICTED_ONLY = {
    "restricted volume types": lambda s: s["volumes"].append(
        {"name": "n", "nfs": {"server": "x", "path": "/"}}
    ),
    "allowPrivilegeEscalation != false": lambda s: s["containers"][0]["securityContext"].pop(
        "allowPrivilegeEscalation"
    ),
    "runAsNonRoot != true": lambda s: s["securityContext"].pop("runAsNonRoot"),
    "runAsUser=0": lambda s: s["containers"][0]["securityContext"].update(runAsUser=0),
    "seccompProfile": lambda s: s["securityContext"].pop("seccompProfile"),
    "unrestricted capabilities": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(
        add=["NET_ADMIN"]
    ),
}


def test_a_restricted_pod_passes_both_levels():
    assert baseline_violations(restricted_pod()) == [] and restricted_violations(restricted_pod()) == []


@pytest.mark.parametrize("control", sorted(BREAKS))
def test_each_baseline_control_is_enforced(control):
    spec = copy.deepcopy(restricted_pod())
    BREAKS[control](spec)
    assert any(v.startswith(control) for v in baseline_violations(spec)), baseline_violations(spec)
    assert any(v.startswith(control) for v in restricted_violations(spec))


@pytest.mark.parametrize("control", sorted(RESTRICTED_ONLY))
def test_each_restricted_control_is_enforced_at_restricted_only(control):
    spec = copy.deepcopy(restricted_pod())
    RESTRICTED_ONLY[control](spec)
    assert any(v.startswith(control) for v in restricted_violations(spec)), restricted_violations(spec)
    if control not in ("non-default capabilities",):
        assert not any(v.startswith(control) for v in baseline_violations(spec))


def test_container_level_settings_may_stand_in_for_the_pods():
    spec = restricted_pod()
    del spec["securityContext"]
    spec["containers"][0]["securityContext"].update(runAsNonRoot=True, seccompProfile={"type": "Localhost"})
    assert restricted_violations(spec) == []
