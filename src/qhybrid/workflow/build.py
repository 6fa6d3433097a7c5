"""The cutting workflow as an Argo Workflow, built with Hera from the same options as ``qhybrid run``.

DAG: ``generate`` -> ``batches`` -> ``execute-<branch>`` (one fan-out per resource
class the policy can use, over ``withParam`` lists that ``batches`` writes) ->
``reconstruct`` -> ``report``. Every step container runs ``qhybrid step ...``,
the entry points the local runner calls, so the cluster and the laptop share one
code path.

Every pod is a worker pod: the worker labels (which the gateway's NetworkPolicy
admits), a Kueue queue label, its pool's nodeSelector and tolerations, requests
equal to limits from :mod:`qhybrid.workflow.batching`, the ``restricted`` Pod
Security settings with an emptyDir at /tmp, and a retry strategy that survives a
Kueue preemption (Kueue deletes the pod: Argo sees an Error, not a Failure) and a
lost node. No Secret reaches any of them: QPU-branch pods authenticate to the
gateway with a projected service-account token for the gateway's audience.
generate, batches, reconstruct and report run on the cpu queue too, so they are
admitted, placed and accounted like the batches (the system pool is sized for
the controllers only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hera.workflows import (
    DAG,
    Container,
    Histogram,
    Label,
    Parameter,
    RawArtifact,
    RetryStrategy,
    S3Artifact,
    Task,
    Workflow,
)
from hera.workflows import models as m
from hera.workflows.archive import NoneArchiveStrategy

from qhybrid.blueprint.cache import cache_url
from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.monitoring import metric_names as m_names
from qhybrid.blueprint.names import (
    ARTIFACT_PVC,
    GATEWAY_NAME,
    GATEWAY_NAMESPACE,
    GATEWAY_TOKEN_AUDIENCE,
    PART_OF,
    WORKER_GATEWAY_TOKEN_DIR,
    WORKER_GATEWAY_TOKEN_FILE,
    WORKER_LABELS,
    WORKFLOW_ARTIFACT_PREFIX,
    WORKFLOW_SERVICE_ACCOUNT,
    WORKFLOW_STEP_LABEL,
)
from qhybrid.blueprint.namespaces import restricted_container_security, restricted_pod_security
from qhybrid.blueprint.pools import KUEUE_QUEUE_LABEL, RESOURCE_CLASSES, pool_placement
from qhybrid.cutting.policies import DEFAULT_FAILOVER, check_failover
from qhybrid.errors import InputError
from qhybrid.pipeline.rundir import EXACT_FILE, RECONSTRUCTION_FILE, RESULTS_DIR
from qhybrid.spec import RunSpec, spec_to_args
from qhybrid.workflow.batching import EXECUTOR, MAIN_REQUESTS, Requests, branch_slots

GENERATE_NAME = "cutting-"
# Kueue reads a workload's WorkloadPriorityClass from this label on its pods.
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
BRANCH_LABEL = "qhybrid.io/branch"
STEP_LABEL = WORKFLOW_STEP_LABEL
# artifactStore=pvc: the shared volume is mounted here in every pod; each workflow
# works in its own run directory under it. artifactStore=s3: an emptyDir, filled
# and emptied by Argo's input and output artifacts under qhybrid/<workflow>/.
PVC_MOUNT = "/var/lib/qhybrid/runs"
S3_WORK = "/work"
BATCH_DIR = "/tmp/batches"
TOKEN_EXPIRATION_S = 600
# Per attempt (a pod's activeDeadlineSeconds starts when it starts, not while Kueue gates it).
STEP_DEADLINE_S = {"generate": 1800, "batches": 300, "execute": 3 * 3600, "reconstruct": 1800, "report": 600}
WORKFLOW_DEADLINE_S = 12 * 3600
STEP_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600)
RETRY_LIMIT = 6
# Retry errors (pod deleted by a Kueue preemption or eviction, node lost) and failures,
# except exit code 2: the step's own "bad input" answer, which a retry cannot change.
RETRY_EXPRESSION = 'lastRetry.status == "Error" || asInt(lastRetry.exitCode) != 2'


def run_dir(config: StackConfig) -> str:
    """Return the run directory every step of a workflow uses, on the pod's file system."""
    if config.artifact_store == "pvc":
        return f"{PVC_MOUNT}/{{{{workflow.name}}}}"
    return f"{S3_WORK}/run"


def gateway_url(config: StackConfig) -> str:
    """Return the in-cluster URL of the QPU gateway Service."""
    return f"http://{GATEWAY_NAME}.{GATEWAY_NAMESPACE}.svc:{config.gateway_port}"


# A user's circuit reaches the generate pod as an Argo raw artifact (its text is in the
# Workflow object itself): no ConfigMap, volume or registry needed.
CIRCUIT_PATH = "/tmp/inputs/circuit.qasm"


def _quantities(requests: Requests, gpu_resource: str | None) -> dict[str, m.Quantity]:
    values = {"cpu": f"{requests.cpu_milli}m", "memory": f"{requests.memory_mi}Mi"}
    if requests.gpus and gpu_resource is not None:
        values[gpu_resource] = str(requests.gpus)
    return {key: m.Quantity(__root__=value) for key, value in values.items()}


def _resources(resource_class: str, config: StackConfig) -> m.ResourceRequirements:
    quantities = _quantities(MAIN_REQUESTS[resource_class], config.gpu_resource)
    return m.ResourceRequirements(requests=quantities, limits=dict(quantities))


# Pins Argo's wait sidecar to EXECUTOR, so each pod's total is what batching.slots() assumes.
_WAIT_PATCH = json.dumps(
    {
        "containers": [
            {
                "name": "wait",
                "resources": {
                    "requests": {"cpu": f"{EXECUTOR.cpu_milli}m", "memory": f"{EXECUTOR.memory_mi}Mi"},
                    "limits": {"cpu": f"{EXECUTOR.cpu_milli}m", "memory": f"{EXECUTOR.memory_mi}Mi"},
                },
            }
        ]
    },
    sort_keys=True,
)


def _s3_artifact(name: str, path: str, key: str, *, optional: bool = False) -> S3Artifact:
    # Key-only: bucket, endpoint and credentials come from the namespace's default repository.
    return S3Artifact(
        name=name,
        path=path,
        key=f"{WORKFLOW_ARTIFACT_PREFIX}/{{{{workflow.name}}}}/{key}",
        archive=NoneArchiveStrategy(),
        optional=optional or None,
    )


def step_duration_metric(step: str, resource_class: str) -> Histogram:
    """Argo's custom metric of a step: its duration by step, queue and final status (debug dashboard).

    The workflow controller emits it when the step ends, retries included; no workflow
    label (one series per workflow would grow without bound). Each run's own timings
    are in its report.
    """
    return Histogram(
        name=m_names.WORKFLOW_STEP_DURATION_SECONDS,
        help="Seconds a qhybrid workflow step took, by step, queue and final status.",
        labels=[
            Label(key="step", value=step),
            Label(key="queue", value=resource_class),
            Label(key="status", value="{{status}}"),
        ],
        buckets=list(STEP_DURATION_BUCKETS),
        value="{{duration}}",
    )


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How a run goes, beyond its numbers (none of these changes the spec hash)."""

    failover: str = DEFAULT_FAILOVER  # what the qpu branch may move to its fallback
    cache: bool = True  # use the stack's shared result cache (when the stack has one)
    priority_class: str | None = None  # a Kueue WorkloadPriorityClass for every pod
    shot_budget: int | None = None  # most QPU shots the plan may draw; generate refuses more

    def __post_init__(self) -> None:
        """Refuse values the steps would refuse, before any pod starts."""
        check_failover(self.failover)
        if self.shot_budget is not None and self.shot_budget < 1:
            raise InputError("--shot-budget", f"must be at least 1, got {self.shot_budget}")


class _Builder:
    """Builds one workflow's templates; ``build_workflow`` is the entry point."""

    def __init__(self, config: StackConfig, spec: RunSpec, per_pod: int | None, options: RunOptions) -> None:
        self.config = config
        self.spec = spec
        self.per_pod = per_pod
        self.options = options
        self.run_dir = run_dir(config)
        self.slots = branch_slots(config, spec.policy)
        self.pvc = config.artifact_store == "pvc"
        # The shared result cache: generate looks hits up first (batches hold only misses)
        # and execute pods read and write it. Only these two steps may reach it.
        cached = config.cache_enabled and options.cache
        self.cache_args = ["--cache", cache_url(config)] if cached else []

    def _run_artifacts(self, *names: str) -> list[S3Artifact]:
        paths = {
            "run": (self.run_dir, "run", False),
            "results": (f"{self.run_dir}/{RESULTS_DIR}", RESULTS_DIR, False),
            "reconstruction": (
                f"{self.run_dir}/{RECONSTRUCTION_FILE}",
                RECONSTRUCTION_FILE,
                False,
            ),
            "exact": (f"{self.run_dir}/{EXACT_FILE}", EXACT_FILE, True),
        }
        return [_s3_artifact(n, paths[n][0], paths[n][1], optional=paths[n][2]) for n in names]

    def container(
        self,
        name: str,
        step: str,
        resource_class: str,
        args: list[str],
        *,
        inputs: list[Any] | None = None,
        outputs: list[Any] | None = None,
    ) -> Container:
        """Return one step's template on ``resource_class``'s queue and pool."""
        rc = RESOURCE_CLASSES[resource_class]
        placement = pool_placement(rc.pool)
        volumes: list[m.Volume] = [m.Volume(name="tmp", empty_dir=m.EmptyDirVolumeSource())]
        mounts = [m.VolumeMount(name="tmp", mount_path="/tmp")]
        if self.pvc:
            volumes.append(
                m.Volume(
                    name="runs",
                    persistent_volume_claim=m.PersistentVolumeClaimVolumeSource(claim_name=ARTIFACT_PVC),
                )
            )
            mounts.append(m.VolumeMount(name="runs", mount_path=PVC_MOUNT))
        else:
            volumes.append(m.Volume(name="work", empty_dir=m.EmptyDirVolumeSource()))
            mounts.append(m.VolumeMount(name="work", mount_path=S3_WORK))
        if resource_class == "qpu":
            token = m.ServiceAccountTokenProjection(
                audience=GATEWAY_TOKEN_AUDIENCE,
                expiration_seconds=TOKEN_EXPIRATION_S,
                path=WORKER_GATEWAY_TOKEN_FILE,
            )
            volumes.append(
                m.Volume(
                    name="gateway-token",
                    projected=m.ProjectedVolumeSource(
                        sources=[m.VolumeProjection(service_account_token=token)]
                    ),
                )
            )
            mounts.append(
                m.VolumeMount(name="gateway-token", mount_path=WORKER_GATEWAY_TOKEN_DIR, read_only=True)
            )
        image = self.config.gpu_worker_image if resource_class == "gpu" else self.config.worker_image
        priority_class = self.options.priority_class
        priority = {} if priority_class is None else {KUEUE_PRIORITY_LABEL: priority_class}
        return Container(
            name=name,
            image=image,
            image_pull_policy="IfNotPresent",
            args=args,
            env=[
                m.EnvVar(name="HOME", value="/tmp"),
                m.EnvVar(name="MPLCONFIGDIR", value="/tmp/matplotlib"),
            ],
            labels={
                **WORKER_LABELS,
                KUEUE_QUEUE_LABEL: rc.local_queue,
                BRANCH_LABEL: resource_class,
                STEP_LABEL: step,
                **priority,
            },
            node_selector=dict(placement["nodeSelector"]),
            tolerations=[m.Toleration(**t) for t in placement["tolerations"]],
            resources=_resources(resource_class, self.config),
            security_context=m.SecurityContext.parse_obj(restricted_container_security()),
            pod_security_context=m.PodSecurityContext.parse_obj(restricted_pod_security()),
            pod_spec_patch=_WAIT_PATCH,
            volumes=volumes,
            volume_mounts=mounts,
            active_deadline_seconds=m.IntOrString(__root__=STEP_DEADLINE_S[step]),
            retry_strategy=RetryStrategy(
                limit=RETRY_LIMIT,
                retry_policy="Always",
                expression=RETRY_EXPRESSION,
                backoff=m.Backoff(duration="10s", factor=m.IntOrString(__root__=2), max_duration="10m"),
            ),
            inputs=inputs,
            outputs=outputs,
            metrics=step_duration_metric(step, resource_class),
        )

    def templates(self) -> dict[str, Container]:
        """Return every step template by name."""
        rd = self.run_dir
        s3 = not self.pvc
        slot_flags = [flag for name, n in self.slots.items() for flag in ("--slots", f"{name}={n}")]
        per_pod = [] if self.per_pod is None else ["--per-pod", str(self.per_pod)]
        budget = [] if self.options.shot_budget is None else ["--shot-budget", str(self.options.shot_budget)]
        out: dict[str, Container] = {}
        out["generate"] = self.container(
            "generate",
            "generate",
            "cpu",
            # Each branch's pod checks its own backend; this cpu pod cannot run gpu or qpu.
            [
                "step",
                "generate",
                "--out",
                rd,
                *spec_to_args(self.spec, circuit_path=CIRCUIT_PATH),
                "--no-check-backends",
                *self.cache_args,
                *budget,
                # The stack's price table: the report prices the run's usage with it.
                "--prices",
                json.dumps(self.config.prices.to_json(), sort_keys=True, separators=(",", ":")),
            ],
            inputs=(
                [RawArtifact(name="circuit", path=CIRCUIT_PATH, data=self.spec.circuit_qasm)]
                if self.spec.circuit_qasm is not None
                else None
            ),
            outputs=self._run_artifacts("run") if s3 else None,
        )
        out["batches"] = self.container(
            "batches",
            "batches",
            "cpu",
            ["step", "batches", "--run-dir", rd, "--out-dir", BATCH_DIR, *slot_flags, *per_pod],
            inputs=self._run_artifacts("run") if s3 else None,
            outputs=[
                Parameter(name=name, value_from=m.ValueFrom(path=f"{BATCH_DIR}/{name}.json"))
                for name in self.slots
            ],
        )
        for name in self.slots:
            args = ["step", "execute", "--run-dir", rd, "--backend", name]
            args += ["--start", "{{inputs.parameters.start}}", "--stop", "{{inputs.parameters.stop}}"]
            args += self.cache_args
            if name == "qpu":
                token_file = f"{WORKER_GATEWAY_TOKEN_DIR}/{WORKER_GATEWAY_TOKEN_FILE}"
                args += ["--gateway-url", gateway_url(self.config), "--gateway-token-file", token_file]
                args += ["--failover", self.options.failover]
            out[f"execute-{name}"] = self.container(
                f"execute-{name}",
                "execute",
                name,
                args,
                inputs=[
                    Parameter(name="start"),
                    Parameter(name="stop"),
                    *(self._run_artifacts("run") if s3 else []),
                ],
                outputs=self._run_artifacts("results") if s3 else None,
            )
        out["reconstruct"] = self.container(
            "reconstruct",
            "reconstruct",
            "cpu",
            ["step", "reconstruct", "--run-dir", rd],
            inputs=self._run_artifacts("run", "results") if s3 else None,
            outputs=self._run_artifacts("reconstruction", "exact") if s3 else None,
        )
        out["report"] = self.container(
            "report",
            "report",
            "cpu",
            ["step", "report", "--run-dir", rd],
            inputs=self._run_artifacts("run", "results", "reconstruction", "exact") if s3 else None,
            # The report travels back in the workflow's status: `workflow submit` and the
            # QuantumJob operator read it there on either artifact store, with no pod or
            # bucket access of their own. On s3 it is kept in the bucket too (report_location).
            outputs=[
                Parameter(name="report", value_from=m.ValueFrom(path=f"{rd}/report.json")),
                *([_s3_artifact("report", f"{rd}/report.json", "report.json")] if s3 else []),
            ],
        )
        return out


def report_location(config: StackConfig, workflow_name: str) -> str:
    """Return where a finished workflow's report.json is kept: a path on the PVC, or an S3 URL."""
    if config.artifact_store == "pvc":
        return f"pvc://{ARTIFACT_PVC}/{workflow_name}/report.json"
    return f"s3://{config.artifact_s3_bucket}/{WORKFLOW_ARTIFACT_PREFIX}/{workflow_name}/report.json"


def build_workflow(
    config: StackConfig,
    spec: RunSpec,
    *,
    per_pod: int | None = None,
    name: str | None = None,
    options: RunOptions | None = None,
) -> Workflow:
    """Return the Hera Workflow of ``spec`` on ``config``'s stack (``per_pod``: see split_batches)."""
    builder = _Builder(config, spec, per_pod, options or RunOptions())
    templates = builder.templates()
    labels = {**PART_OF, "qhybrid.io/spec-hash": spec.spec_hash()[:12]}
    with Workflow(
        generate_name=None if name else GENERATE_NAME,
        name=name,
        namespace=config.workflow_namespace,
        entrypoint="cutting",
        service_account_name=WORKFLOW_SERVICE_ACCOUNT,
        labels=labels,
        active_deadline_seconds=WORKFLOW_DEADLINE_S,
        pod_gc=m.PodGC(strategy="OnPodSuccess"),
        ttl_strategy=m.TTLStrategy(seconds_after_success=86400, seconds_after_failure=604800),
    ) as workflow:
        with DAG(name="cutting"):
            Task(name="generate", template=templates["generate"])
            Task(name="batches", template=templates["batches"], depends="generate")
            for branch in builder.slots:
                Task(
                    name=f"execute-{branch}",
                    template=templates[f"execute-{branch}"],
                    depends="batches",
                    with_param=f"{{{{tasks.batches.outputs.parameters.{branch}}}}}",
                    arguments={"start": "{{item.start}}", "stop": "{{item.stop}}"},
                )
            fan_outs = " && ".join(f"execute-{branch}" for branch in builder.slots)
            Task(name="reconstruct", template=templates["reconstruct"], depends=fan_outs)
            Task(name="report", template=templates["report"], depends="reconstruct")
    return workflow


def workflow_object(
    config: StackConfig,
    spec: RunSpec,
    *,
    per_pod: int | None = None,
    name: str | None = None,
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """Return the Workflow as a plain dict (what ``kubectl apply`` or the API takes)."""
    return build_workflow(config, spec, per_pod=per_pod, name=name, options=options).to_dict()


def to_yaml(workflow: dict[str, Any]) -> str:
    """Return the Workflow as YAML in a stable key order (the committed golden file's format)."""
    import yaml

    return yaml.safe_dump(workflow, sort_keys=True, default_flow_style=False, width=100)
