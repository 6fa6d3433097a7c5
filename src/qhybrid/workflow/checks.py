"""Checks on a rendered Workflow that neither Hera nor the API server make before it runs.

``check_workflow(obj, config)`` returns a list of problems (empty when fine):

- the DAG: the entrypoint and every task's template exist, ``depends`` names
  tasks of the same DAG, and the graph is acyclic;
- parameters: every ``{{inputs.parameters.X}}`` a template uses is declared, every
  task passes exactly the inputs its template declares, ``{{tasks.T.outputs.parameters.P}}``
  names a task the consumer depends on whose template declares output P, and
  ``{{item...}}`` appears only in a task that loops;
- names: object, template, task and parameter names are valid Kubernetes names;
- pods: each carries the worker labels and a queue label naming a LocalQueue the
  blueprint creates, its LocalQueue's flavor's taints are tolerated and its node
  labels selected, requests equal limits, the ``restricted`` settings hold (with a
  writable /tmp), and no Secret reaches it (volume, projected source, env or envFrom,
  also inside podSpecPatch); QPU-branch pods mount the gateway's projected token;
- size: :func:`estimated_size` stays far below etcd's object limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.kueue import kueue_objects
from qhybrid.blueprint.names import GATEWAY_TOKEN_AUDIENCE, WORKER_GATEWAY_TOKEN_DIR, WORKER_LABELS
from qhybrid.blueprint.pools import KUEUE_QUEUE_LABEL, POOL_LABEL, POOLS
from qhybrid.blueprint.validate.fields import dns_label_problem, dns_subdomain_problem, label_value_problem
from qhybrid.blueprint.validate.kueue import tolerates

ETCD_LIMIT_BYTES = 1024 * 1024  # Argo refuses (or must offload) a Workflow larger than ~1 MiB
SIZE_BUDGET_BYTES = ETCD_LIMIT_BYTES // 4  # "far below": a quarter of the limit
# What one node of status.nodes costs, measured on Argo 3.6 pod nodes (id, names, phase,
# times, template, inputs, outputs, children, host, resourcesDuration): ~0.8-1 KiB of JSON.
NODE_STATUS_BYTES = 1024
_INPUT_REF = re.compile(r"\{\{\s*inputs\.parameters\.([A-Za-z0-9_.-]+)\s*\}\}")
_TASK_OUTPUT_REF = re.compile(r"\{\{\s*tasks\.([A-Za-z0-9-]+)\.outputs\.parameters\.([A-Za-z0-9_-]+)\s*\}\}")
_ITEM_REF = re.compile(r"\{\{\s*item(\.[A-Za-z0-9_]+)?\s*\}\}")
_DEPENDS_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z]+)?")
_PARAMETER_NAME = re.compile(r"^[-a-zA-Z0-9_]+$")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _inputs(template: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {p["name"]: p for p in (template.get("inputs") or {}).get("parameters") or []}


def _outputs(template: Mapping[str, Any]) -> set[str]:
    return {p["name"] for p in (template.get("outputs") or {}).get("parameters") or []}


def _depends_on(task: Mapping[str, Any]) -> set[str]:
    names = set(task.get("dependencies") or [])
    for token in _DEPENDS_TOKEN.findall(task.get("depends") or ""):
        names.add(token.split(".")[0])
    return names


def _acyclic_order(tasks: Mapping[str, set[str]]) -> list[str] | None:
    order: list[str] = []
    remaining = {name: set(deps) for name, deps in tasks.items()}
    while remaining:
        ready = sorted(name for name, deps in remaining.items() if not deps & set(remaining))
        if not ready:
            return None
        order += ready
        for name in ready:
            del remaining[name]
    return order


def dag_order(obj: Mapping[str, Any], dag_template: str | None = None) -> list[dict[str, Any]]:
    """Return the tasks of a DAG template (the entrypoint by default) in a valid execution order."""
    templates = {t["name"]: t for t in obj["spec"]["templates"]}
    tasks = {t["name"]: t for t in templates[dag_template or obj["spec"]["entrypoint"]]["dag"]["tasks"]}
    order = _acyclic_order({name: _depends_on(task) & set(tasks) for name, task in tasks.items()})
    if order is None:
        raise ValueError("the DAG has a cycle")
    return [tasks[name] for name in order]


def _check_dag(name: str, template: Mapping[str, Any], templates: Mapping[str, Any]) -> list[str]:
    problems = []
    tasks = {t.get("name"): t for t in template["dag"].get("tasks") or []}
    deps: dict[str, set[str]] = {}
    for task_name, task in tasks.items():
        where = f"template {name}: task {task_name}"
        if problem := dns_label_problem(task_name):
            problems.append(f"{where}: {problem}")
        target = templates.get(task.get("template"))
        if target is None:
            problems.append(f"{where}: template {task.get('template')!r} does not exist")
        deps[task_name] = _depends_on(task)
        for missing in sorted(deps[task_name] - set(tasks)):
            problems.append(f"{where}: depends on task {missing!r}, which does not exist")
        given = {p["name"] for p in (task.get("arguments") or {}).get("parameters") or []}
        if target is not None:
            declared = _inputs(target)
            for extra in sorted(given - set(declared)):
                problems.append(f"{where}: passes parameter {extra!r} that {target['name']} does not declare")
            for needed, spec in declared.items():
                if needed not in given and "value" not in spec and "default" not in spec:
                    problems.append(f"{where}: does not pass {target['name']}'s parameter {needed!r}")
        loops = any(task.get(key) for key in ("withParam", "withItems", "withSequence"))
        for text in _strings({k: v for k, v in task.items() if k not in ("depends", "name", "template")}):
            if _ITEM_REF.search(text) and not loops:
                problems.append(f"{where}: uses {{{{item}}}} but has no withParam/withItems")
            for producer, output in _TASK_OUTPUT_REF.findall(text):
                if producer not in tasks:
                    problems.append(f"{where}: reads outputs of task {producer!r}, which does not exist")
                    continue
                producer_template = templates.get(tasks[producer].get("template")) or {}
                if output not in _outputs(producer_template):
                    problems.append(f"{where}: task {producer} has no output parameter {output!r}")
                if producer not in _ancestors(task_name, tasks):
                    problems.append(f"{where}: reads outputs of {producer} without depending on it")
    if _acyclic_order({n: d & set(tasks) for n, d in deps.items()}) is None:
        problems.append(f"template {name}: the DAG has a cycle")
    return problems


def _ancestors(name: str, tasks: Mapping[str, Mapping[str, Any]]) -> set[str]:
    seen: set[str] = set()
    stack = list(_depends_on(tasks[name]))
    while stack:
        current = stack.pop()
        if current in seen or current not in tasks:
            continue
        seen.add(current)
        stack += _depends_on(tasks[current])
    return seen


def secret_references(value: Any, path: str = "") -> list[str]:
    """Return the paths of every Secret reference inside ``value`` (volumes, projections, env)."""
    found = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if key in ("secret", "secretKeyRef", "secretRef") and item is not None:
                found.append(here)
            found += secret_references(item, here)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += secret_references(item, f"{path}[{i}]")
    return found


def _local_queues(config: StackConfig) -> dict[str, dict[str, Any]]:
    """Return LocalQueue name -> the ResourceFlavor of its ClusterQueue's first flavor (the class's own)."""
    objs = kueue_objects(config)
    flavors = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ResourceFlavor"}
    cluster_queues = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ClusterQueue"}
    result = {}
    for lq in (o for o in objs if o["kind"] == "LocalQueue"):
        if lq["metadata"]["namespace"] != config.workflow_namespace:
            continue
        cq = cluster_queues[lq["spec"]["clusterQueue"]]
        first = cq["spec"]["resourceGroups"][0]["flavors"][0]["name"]
        result[lq["metadata"]["name"]] = flavors[first]
    return result


def _backend_image_problems(where: str, container: Mapping[str, Any], config: StackConfig) -> list[str]:
    """A step that runs the gpu backend needs the GPU worker image and a stack with GPUs."""
    args = [str(a) for a in container.get("args") or []]
    if "--backend" not in args or args.index("--backend") + 1 >= len(args):
        return []
    if args[args.index("--backend") + 1] != "gpu":
        return []
    problems = []
    if config.gpu_resource is None:
        problems.append(
            f"{where}: runs the gpu backend, but stack {config.stack!r} has no GPUs "
            f"(gpuVendor {config.gpu_vendor})"
        )
    if container.get("image") != config.gpu_worker_image:
        problems.append(
            f"{where}: runs the gpu backend in image {container.get('image')!r}, which has no GPU simulator "
            f"(the stack's GPU worker image is {config.gpu_worker_image!r})"
        )
    return problems


def _check_pod(name: str, template: Mapping[str, Any], config: StackConfig) -> list[str]:
    where = f"template {name}"
    problems = []
    labels = (template.get("metadata") or {}).get("labels") or {}
    for key, value in WORKER_LABELS.items():
        if labels.get(key) != value:
            problems.append(f"{where}: lacks worker label {key}={value} (the gateway admits only those)")
    for value in labels.values():
        if problem := label_value_problem(value):
            problems.append(f"{where}: {problem}")
    queue = labels.get(KUEUE_QUEUE_LABEL)
    queues = _local_queues(config)
    if queue not in queues:
        problems.append(f"{where}: queue label {KUEUE_QUEUE_LABEL}={queue!r} is not one of {sorted(queues)}")
    else:
        flavor = queues[queue]["spec"]
        pool = POOLS[flavor["nodeLabels"][POOL_LABEL]]
        for taint in pool.taints:
            if not tolerates(template.get("tolerations") or [], taint):
                flavor_name = queues[queue]["metadata"]["name"]
                problems.append(f"{where}: does not tolerate {taint} of flavor {flavor_name}")
        for key, value in (template.get("nodeSelector") or {}).items():
            if flavor["nodeLabels"].get(key, value) != value:
                problems.append(f"{where}: nodeSelector {key}={value} excludes its flavor's nodes")
    container = template.get("container") or {}
    resources = container.get("resources") or {}
    if not resources.get("requests") or resources.get("requests") != resources.get("limits"):
        problems.append(f"{where}: requests must be set and equal limits (Kueue charges requests)")
    pod_security = template.get("securityContext") or {}
    security = container.get("securityContext") or {}
    if not pod_security.get("runAsNonRoot") or not security.get("readOnlyRootFilesystem"):
        problems.append(f"{where}: not restricted (runAsNonRoot, readOnlyRootFilesystem)")
    if security.get("allowPrivilegeEscalation") is not False or "ALL" not in (
        (security.get("capabilities") or {}).get("drop") or []
    ):
        problems.append(f"{where}: must drop ALL capabilities and forbid privilege escalation")
    if "/tmp" not in {mount.get("mountPath") for mount in container.get("volumeMounts") or []}:
        problems.append(f"{where}: read-only root file system but no volume at /tmp")
    problems += _backend_image_problems(where, container, config)
    patch = template.get("podSpecPatch")
    for ref in secret_references(template) + secret_references(json.loads(patch) if patch else {}):
        problems.append(f"{where}: references a Secret at {ref}; worker pods must hold none")
    if labels.get("qhybrid.io/branch") == "qpu":
        problems += _check_gateway_token(where, template)
    return problems


def _check_gateway_token(where: str, template: Mapping[str, Any]) -> list[str]:
    mounts = {m.get("name"): m for m in (template.get("container") or {}).get("volumeMounts") or []}
    for volume in template.get("volumes") or []:
        for source in (volume.get("projected") or {}).get("sources") or []:
            token = source.get("serviceAccountToken") or {}
            mount = mounts.get(volume.get("name")) or {}
            audience_ok = token.get("audience") == GATEWAY_TOKEN_AUDIENCE
            if audience_ok and mount.get("mountPath") == WORKER_GATEWAY_TOKEN_DIR:
                args = (template.get("container") or {}).get("args") or []
                if "--gateway-token-file" not in args or "--gateway-url" not in args:
                    return [f"{where}: mounts the gateway token but passes no --gateway-url/-token-file"]
                return []
    return [
        f"{where}: QPU branch without a projected token (audience {GATEWAY_TOKEN_AUDIENCE}) "
        f"at {WORKER_GATEWAY_TOKEN_DIR}"
    ]


def check_workflow(obj: Mapping[str, Any], config: StackConfig) -> list[str]:
    """Return every problem of a rendered Workflow on ``config``'s stack (empty when fine)."""
    problems = []
    if obj.get("apiVersion") != "argoproj.io/v1alpha1" or obj.get("kind") != "Workflow":
        problems.append("not an argoproj.io/v1alpha1 Workflow")
    metadata = obj.get("metadata") or {}
    name = metadata.get("name") or (metadata.get("generateName") or "").rstrip("-")
    if problem := dns_subdomain_problem(name):
        problems.append(f"metadata: {problem}")
    if metadata.get("namespace") != config.workflow_namespace:
        problems.append(f"metadata.namespace is not the workflow namespace {config.workflow_namespace!r}")
    spec = obj.get("spec") or {}
    problems += [f"spec.{ref}: a Secret in the workflow" for ref in secret_references(spec.get("volumes"))]
    templates = {t.get("name"): t for t in spec.get("templates") or []}
    if spec.get("entrypoint") not in templates:
        problems.append(f"spec.entrypoint {spec.get('entrypoint')!r} is not a template")
    for template_name, template in templates.items():
        if problem := dns_label_problem(template_name):
            problems.append(f"template {template_name}: {problem}")
        for parameter in _inputs(template):
            if not _PARAMETER_NAME.match(parameter):
                problems.append(f"template {template_name}: parameter name {parameter!r} is invalid")
        used = {ref for text in _strings(template) for ref in _INPUT_REF.findall(text)}
        for missing in sorted(used - set(_inputs(template))):
            problems.append(f"template {template_name}: uses inputs.parameters.{missing}, not declared")
        if "dag" in template:
            problems += _check_dag(template_name, template, templates)
        elif "container" in template:
            problems += _check_pod(template_name, template, config)
        else:
            problems.append(f"template {template_name}: neither a dag nor a container")
    return problems


def estimated_size(obj: Mapping[str, Any], batches: Mapping[str, Iterable[Mapping[str, int]]]) -> int:
    """Return the Workflow's size in etcd once it has run ``batches``: spec plus status, in bytes.

    The status holds one node per pod and per fan-out/DAG node (NODE_STATUS_BYTES each)
    and the ``batches`` step's output parameters (the JSON lists themselves).
    """
    lists = {name: list(items) for name, items in batches.items()}
    pods = sum(len(items) for items in lists.values())
    templates = [t for t in obj["spec"]["templates"] if "container" in t]
    fan_outs = len(lists)
    nodes = 1 + pods + fan_outs + (len(templates) - fan_outs)  # DAG + batch pods + groups + other steps
    outputs = sum(len(json.dumps(items, separators=(",", ":"))) for items in lists.values())
    return len(json.dumps(obj, separators=(",", ":"))) + nodes * NODE_STATUS_BYTES + outputs
