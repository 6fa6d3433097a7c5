"""The cutting workflow: golden file, structural checks (and that each breakage is caught), local replay."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.names import WORKER_LABELS
from qhybrid.blueprint.pools import KUEUE_QUEUE_LABEL
from qhybrid.cli import run_in_process
from qhybrid.cutting.policies import POLICIES
from qhybrid.errors import InputError
from qhybrid.pipeline.rundir import RunDir
from qhybrid.pipeline.runner import run_local
from qhybrid.spec import RunSpec
from qhybrid.workflow.batching import branch_slots, split_batches
from qhybrid.workflow.build import to_yaml, workflow_object
from qhybrid.workflow.checks import SIZE_BUDGET_BYTES, check_workflow, dag_order, estimated_size
from qhybrid.workflow.replay import replay
from tests.conftest import REPO, regenerating, run_cli, spec_for

GOLDEN = REPO / "workflows" / "cutting-default.yaml"
STACKS = ("kind", "eks")


def default_workflow() -> dict:
    return workflow_object(load_stack_file("kind"), RunSpec(scenario="cutting"))


def template(workflow: dict, name: str) -> dict:
    return next(t for t in workflow["spec"]["templates"] if t["name"] == name)


def dag_task(workflow: dict, name: str) -> dict:
    return next(t for t in template(workflow, "cutting")["dag"]["tasks"] if t["name"] == name)


def test_golden_file_matches_the_rendered_default_workflow():
    # REGENERATE=1 pytest tests/scenarios/test_workflow.py rewrites the committed file.
    rendered = to_yaml(default_workflow())
    if regenerating():
        GOLDEN.write_text(rendered, encoding="utf-8")
    assert GOLDEN.read_text(encoding="utf-8") == rendered, (
        f"{GOLDEN.relative_to(REPO)} drifted from the builder; rerun with REGENERATE=1 and review the diff"
    )


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_renders_and_passes_the_checks_for_every_stack_and_policy(stack, policy):
    config = load_stack_file(stack)
    if policy == "gpu" and config.gpu_resource is None:
        # A stack without GPUs refuses the all-GPU policy when rendering, in one line.
        with pytest.raises(InputError, match=f"stack '{stack}' has no GPUs"):
            workflow_object(config, spec_for(policy))
        return
    workflow = workflow_object(config, spec_for(policy))
    assert check_workflow(workflow, config) == []
    order = [t["name"] for t in dag_order(workflow)]
    branches = list(branch_slots(config, policy))
    assert order == ["generate", "batches", *[f"execute-{b}" for b in branches], "reconstruct", "report"]
    # Kubernetes' API server accepts what yaml round-trips.
    assert yaml.safe_load(to_yaml(workflow)) == workflow
    for t in workflow["spec"]["templates"]:
        if "container" in t:
            assert t["metadata"]["labels"][KUEUE_QUEUE_LABEL].startswith("queue-")
            assert WORKER_LABELS.items() <= t["metadata"]["labels"].items()
            assert t["retryStrategy"]["retryPolicy"] == "Always"
    if config.artifact_store == "s3":
        assert "artifacts" in template(workflow, "execute-" + branches[0])["outputs"]
    else:
        assert "persistentVolumeClaim" in json.dumps(template(workflow, "generate")["volumes"])


def test_every_step_template_declares_its_duration_metric_for_the_debug_dashboard():
    from qhybrid.blueprint.monitoring import metric_names as m

    workflow = default_workflow()
    steps = [t for t in workflow["spec"]["templates"] if "container" in t]
    assert len(steps) >= 5
    for step in steps:
        [metric] = step["metrics"]["prometheus"]
        assert metric["name"] == m.WORKFLOW_STEP_DURATION_SECONDS
        assert metric["histogram"]["value"] == "{{duration}}"
        labels = {label["key"]: label["value"] for label in metric["labels"]}
        assert labels["status"] == "{{status}}" and labels["queue"] in ("cpu", "gpu", "qpu")
        assert "workflow" not in labels  # one series per workflow would grow without bound


def test_a_stack_without_gpus_renders_no_gpu_branch_and_check_catches_one():
    # Given kind (gpuVendor none) and the width policy, the workflow has no gpu branch;
    kind = load_stack_file("kind")
    workflow = workflow_object(kind, spec_for("width"))
    assert [t["name"] for t in dag_order(workflow) if t["name"].startswith("execute-")] == [
        "execute-cpu",
        "execute-qpu",
    ]
    # and a gpu branch on a stack without GPUs, or in the CPU image, is a problem check names.
    eks = load_stack_file("eks")
    gpu_workflow = workflow_object(eks, spec_for("gpu"))
    problems = check_workflow(gpu_workflow, kind)
    assert any("runs the gpu backend, but stack 'kind' has no GPUs" in p for p in problems)
    execute = template(gpu_workflow, "execute-gpu")
    execute["container"]["image"] = eks.worker_image
    problems = check_workflow(gpu_workflow, eks)
    assert problems == [
        f"template execute-gpu: runs the gpu backend in image {eks.worker_image!r}, which has no GPU "
        f"simulator (the stack's GPU worker image is {eks.gpu_worker_image!r})"
    ]


def test_qpu_branch_uses_the_projected_gateway_token_and_no_secret():
    config = load_stack_file("kind")
    qpu = template(workflow_object(config, spec_for("width")), "execute-qpu")
    args = qpu["container"]["args"]
    assert args[args.index("--gateway-url") + 1] == "http://qpu-gateway.qhybrid-gateway.svc:8080"
    assert args[args.index("--gateway-token-file") + 1] == "/var/run/secrets/qhybrid/gateway/token"
    projected = next(v for v in qpu["volumes"] if "projected" in v)["projected"]["sources"][0]
    assert projected["serviceAccountToken"] == {
        "audience": "qpu-gateway",
        "expirationSeconds": 600,
        "path": "token",
    }
    assert "secret" not in json.dumps(qpu).lower().replace("/var/run/secrets/", "")


# Each breakage, and a phrase of the problem that must name it.
def _queue(w):
    template(w, "execute-cpu")["metadata"]["labels"][KUEUE_QUEUE_LABEL] = "queue-fast"


def _no_queue(w):
    del template(w, "generate")["metadata"]["labels"][KUEUE_QUEUE_LABEL]


def _toleration(w):
    template(w, "execute-cpu")["tolerations"][0]["value"] = "gpu"


def _node_selector(w):
    template(w, "report")["nodeSelector"]["qhybrid.io/pool"] = "system"


def _template_ref(w):
    dag_task(w, "execute-cpu")["template"] = "execute-cpus"


def _depends_ref(w):
    dag_task(w, "reconstruct")["depends"] = "execute-gpu"


def _input_ref(w):
    template(w, "execute-cpu")["container"]["args"][-1] = "{{inputs.parameters.end}}"


def _argument(w):
    dag_task(w, "execute-cpu")["arguments"]["parameters"].pop()


def _output_ref(w):
    dag_task(w, "execute-cpu")["withParam"] = "{{tasks.batches.outputs.parameters.cpus}}"


def _item_without_loop(w):
    del dag_task(w, "execute-cpu")["withParam"]


def _cycle(w):
    dag_task(w, "generate")["depends"] = "report"


def _name(w):
    template(w, "execute-cpu")["name"] = "Execute_CPU"
    dag_task(w, "execute-cpu")["template"] = "Execute_CPU"


def _secret_volume(w):
    template(w, "execute-cpu")["volumes"].append({"name": "creds", "secret": {"secretName": "qpu-provider"}})


def _secret_env(w):
    env = template(w, "reconstruct")["container"]["env"]
    env.append({"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "qpu-provider", "key": "token"}}})


def _secret_patch(w):
    template(w, "generate")["podSpecPatch"] = json.dumps(
        {"containers": [{"name": "main", "envFrom": [{"secretRef": {"name": "qpu-provider"}}]}]}
    )


def _worker_label(w):
    del template(w, "batches")["metadata"]["labels"]["app.kubernetes.io/name"]


def _limits(w):
    template(w, "execute-cpu")["container"]["resources"]["limits"]["cpu"] = "2"


def _no_tmp(w):
    mounts = template(w, "execute-cpu")["container"]["volumeMounts"]
    mounts[:] = [m for m in mounts if m["mountPath"] != "/tmp"]


def _root(w):
    template(w, "report")["securityContext"]["runAsNonRoot"] = False


BREAKAGES = {
    "unknown queue label": (_queue, "queue-fast"),
    "missing queue label": (_no_queue, "queue label"),
    "toleration of another pool": (_toleration, "does not tolerate"),
    "nodeSelector off the flavor": (_node_selector, "nodeSelector"),
    "template reference": (_template_ref, "template 'execute-cpus' does not exist"),
    "depends on a missing task": (_depends_ref, "'execute-gpu', which does not exist"),
    "undeclared input parameter": (_input_ref, "inputs.parameters.end"),
    "missing argument": (_argument, "does not pass"),
    "missing output parameter": (_output_ref, "no output parameter 'cpus'"),
    "item without a loop": (_item_without_loop, "no withParam"),
    "cycle": (_cycle, "cycle"),
    "invalid template name": (_name, "Execute_CPU"),
    "secret volume": (_secret_volume, "Secret"),
    "secret env": (_secret_env, "secretKeyRef"),
    "secret in podSpecPatch": (_secret_patch, "secretRef"),
    "worker label": (_worker_label, "worker label"),
    "requests differ from limits": (_limits, "equal limits"),
    "no writable /tmp": (_no_tmp, "/tmp"),
    "root": (_root, "not restricted"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_each_breakage_is_caught(breakage):
    config = load_stack_file("kind")
    workflow = copy.deepcopy(default_workflow())
    assert check_workflow(workflow, config) == []
    breaker, phrase = BREAKAGES[breakage]
    breaker(workflow)
    problems = check_workflow(workflow, config)
    assert any(phrase in problem for problem in problems), problems


def test_a_qpu_branch_without_its_token_is_caught():
    config = load_stack_file("kind")
    workflow = workflow_object(config, spec_for("width"))
    qpu = template(workflow, "execute-qpu")
    qpu["volumes"] = [v for v in qpu["volumes"] if "projected" not in v]
    assert any("projected token" in p for p in check_workflow(workflow, config))


@pytest.mark.parametrize("stack", STACKS)
def test_object_stays_far_below_the_etcd_limit_for_1296_subexperiments_per_branch(stack):
    config = load_stack_file(stack)
    workflow = workflow_object(config, spec_for("width"))
    slots = branch_slots(config, "width")
    backends = [branch for branch in slots for _ in range(1296)]
    ours = estimated_size(workflow, split_batches(backends, slots))
    papers = estimated_size(workflow, split_batches(backends, slots, per_pod=1))
    assert ours < SIZE_BUDGET_BYTES, ours
    # The paper's pod per subexperiment would not fit in etcd at all: the check can fail.
    assert papers > 1024 * 1024, papers


@pytest.mark.parametrize(
    "spec_fields",
    [{"mode": "exact", "seed": 3}, {"mode": "sampled", "shots": 2000, "seed": 7}],
    ids=["exact", "sampled"],
)
def test_replaying_the_rendered_workflow_reproduces_qhybrid_run_bitwise(tmp_path, spec_fields):
    spec = RunSpec(scenario="cutting", **spec_fields)
    reference = run_local(spec, tmp_path / "reference")
    # Replay the committed-format YAML (what kubectl would apply), not the in-memory object.
    workflow = yaml.safe_load(to_yaml(workflow_object(load_stack_file("kind"), spec)))
    done = replay(workflow, tmp_path / "cluster", runner=run_in_process)
    report = json.loads((done.run_dir / "report.json").read_text())
    assert report["estimate"].hex() == reference["estimate"].hex()
    assert report["standard_error"] == reference["standard_error"]
    executes = [pod for pod in done.pods if pod[:2] == ["step", "execute"]]
    assert len(executes) == 4  # kind's cpu queue admits four 1-core pods: four batches
    files = sorted(p.name for p in (done.run_dir / "results").iterdir())
    assert files == [
        f"range-{a:06d}-{b:06d}-cpu.npz" for a, b in ((0, 63), (63, 126), (126, 188), (188, 250))
    ]
    # The local runner's --resume sees the branch files as done: nothing left to execute.
    assert RunDir(done.run_dir).done_ranges(["cpu"] * 250) == [(0, 250)]
    resumed = run_local(spec, done.run_dir)
    assert resumed["estimate"].hex() == reference["estimate"].hex()
    assert sorted(p.name for p in (done.run_dir / "results").iterdir()) == files


def test_a_retried_batch_rewrites_nothing_and_says_so(tmp_path):
    workflow = default_workflow()
    done = replay(workflow, tmp_path, runner=run_in_process)
    execute = next(pod for pod in done.pods if pod[:2] == ["step", "execute"])
    target = next((done.run_dir / "results").iterdir())
    before = (target.stat().st_mtime_ns, target.read_bytes())
    result = run_cli(*execute, check=True)
    assert "already done" in result.stdout
    assert (target.stat().st_mtime_ns, target.read_bytes()) == before
    # A batch for a branch with nothing in its range is a user error (exit 2: never retried).
    rundir = str(done.run_dir)
    empty = ["step", "execute", "--run-dir", rundir, "--backend", "qpu", "--start", "0", "--stop", "9"]
    assert run_in_process(empty) == 2


def test_cli_render_writes_the_golden_file(tmp_path):
    out = tmp_path / "wf.yaml"
    run_cli("workflow", "render", "--stack", "kind", "--out", str(out), check=True)
    assert out.read_text() == GOLDEN.read_text()
    bad = run_cli(
        "workflow", "render", "--stack", "kind", "--policy", "gpu", "--mode", "exact", "--shots", "5"
    )
    assert bad.returncode == 2 and "qhybrid: error: --shots" in bad.stderr


@pytest.mark.slow  # about 25 s: a gateway process and an emulated device
def test_the_qpu_branch_replays_against_a_loopback_gateway(tmp_path, monkeypatch):
    from qhybrid.blueprint.names import WORKER_GATEWAY_TOKEN_DIR, WORKER_GATEWAY_TOKEN_FILE
    from qhybrid.workflow.build import gateway_url
    from tests.gateway.conftest import GatewayProcess
    from tests.scenarios.test_qpu_branch import TOKEN, gateway_config

    for name in ("QHYBRID_GATEWAY_URL", "QHYBRID_GATEWAY_TOKEN_FILE", "QHYBRID_GATEWAY_BACKEND"):
        monkeypatch.delenv(name, raising=False)  # only the pods' own flags may name the gateway
    token_dir = tmp_path / "token"
    token_dir.mkdir()
    (token_dir / WORKER_GATEWAY_TOKEN_FILE).write_text(TOKEN + "\n")
    config = load_stack_file("kind")
    spec = RunSpec(scenario="cutting", mode="sampled", shots=256, seed=3, policy="width")
    workflow = workflow_object(config, spec)
    gateway = GatewayProcess(tmp_path, gateway_config()).start()
    try:
        done = replay(
            workflow,
            tmp_path / "cluster",
            runner=run_in_process,
            path_map={WORKER_GATEWAY_TOKEN_DIR: token_dir, gateway_url(config): gateway.url},
        )
    finally:
        gateway.stop()
    report = json.loads((done.run_dir / "report.json").read_text())
    assert set(report["provenance"]["backend_per_subexperiment"]) == {"qpu"}
    assert report["provenance"]["failovers"] == []
    assert [p[p.index("--backend") + 1] for p in done.pods if "--backend" in p] == ["qpu"] * 4
    assert sorted(p.name for p in (done.run_dir / "results").iterdir())[0].endswith("-qpu.npz")


def test_cli_check_names_each_problem_of_a_broken_file(tmp_path, capsys):
    assert run_in_process(["workflow", "check", "--file", str(GOLDEN)]) == 0
    broken = tmp_path / "broken.yaml"
    text = GOLDEN.read_text().replace("template: execute-cpu\n", "template: execute-cpus\n", 1)
    # the first toleration (generate's): its pool taint's value
    toleration = "      key: qhybrid.io/pool\n      operator: Equal\n      value: cpu\n"
    assert toleration in text
    broken.write_text(text.replace(toleration, toleration.replace("value: cpu", "value: gpu"), 1))
    assert run_in_process(["workflow", "check", "--file", str(broken), "--stack", "kind"]) == 1
    err = capsys.readouterr().err
    assert "template 'execute-cpus' does not exist" in err
    assert "template generate: does not tolerate" in err


def test_a_users_circuit_travels_as_a_raw_artifact_and_replays_bitwise(tmp_path):
    # Given a user's circuit with X/Y terms (several commuting groups) and its own partition,
    from qiskit import qasm3

    from tests.scenarios.helpers import rotations_circuit

    spec = RunSpec(
        circuit_qasm=qasm3.dumps(rotations_circuit(6, 2, seed=11)),
        circuit_source="mine.qasm",
        observable="0.5*XXIIII - 1.0*IIIYYI + 0.75*ZIIIIX",
        partition="AAABBB",
        seed=4,
    )
    reference = run_local(spec, tmp_path / "reference")
    # when the rendered workflow (the YAML kubectl would apply) is replayed,
    workflow = yaml.safe_load(to_yaml(workflow_object(load_stack_file("kind"), spec)))
    assert check_workflow(workflow, load_stack_file("kind")) == []
    generate = next(t for t in workflow["spec"]["templates"] if t["name"] == "generate")
    [raw] = generate["inputs"]["artifacts"]
    assert raw["raw"]["data"] == spec.circuit_qasm
    assert generate["container"]["args"][generate["container"]["args"].index("--circuit") + 1] == raw["path"]
    done = replay(workflow, tmp_path / "cluster", runner=run_in_process)
    # then the estimate is qhybrid run's, bit for bit.
    report = json.loads((done.run_dir / "report.json").read_text())
    assert report["estimate"].hex() == reference["estimate"].hex()


def test_cli_refuses_the_gpu_policy_on_a_stack_without_gpus_in_one_line():
    from tests.conftest import invoke

    result = invoke("workflow", "render", "--stack", "kind", "--policy", "gpu")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "qhybrid: error: --policy: stack 'kind' has no GPUs (gpuVendor none): policy 'gpu' runs everything "
        "on the gpu backend; use --policy cpu, or a stack with GPUs"
    ]
