"""The pods Argo's controller builds for a Workflow's container templates, as plain data.

Argo (emissary executor, v3.4 and later, v4 included) runs each container template
as one pod: an ``init`` container and a ``wait`` sidecar from its executor image,
both with the controller's ``executor`` settings (the chart's ``executor`` values),
beside the template's ``main`` container, which gets the controller's
``mainContainer`` defaults under its own settings. The pod's securityContext is the
template's, else the Workflow's; its volumes are the Workflow's and the template's
plus Argo's own emptyDirs (``var-run-argo``, ``tmp-dir-argo``); ``podSpecPatch`` is
applied last. Built here so that what the admission plugin will see (Pod Security
``restricted`` in the workflow namespace) can be checked without a cluster or Argo.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

ARGO_VOLUMES = ({"name": "var-run-argo", "emptyDir": {}}, {"name": "tmp-dir-argo", "emptyDir": {}})
EXECUTOR_IMAGE = "quay.io/argoproj/argoexec"


def _merged(defaults: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(defaults))
    for key, value in own.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def executor_container(name: str, executor: Mapping[str, Any]) -> dict[str, Any]:
    """Return Argo's ``init`` or ``wait`` container under the controller's executor settings."""
    container: dict[str, Any] = {
        "name": name,
        "image": EXECUTOR_IMAGE,
        "volumeMounts": [{"name": "var-run-argo", "mountPath": "/var/run/argo"}],
    }
    for key in ("securityContext", "resources", "env"):
        if executor.get(key):
            container[key] = copy.deepcopy(executor[key])
    return container


def template_pod(
    workflow: Mapping[str, Any],
    template_name: str,
    *,
    executor: Mapping[str, Any],
    main_container: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the Pod Argo would create for container template ``template_name`` of ``workflow``.

    ``executor`` and ``main_container`` are the argo-workflows chart's ``executor`` and
    ``mainContainer`` values (the controller's settings for those containers).
    """
    spec = workflow["spec"]
    template = next(t for t in spec["templates"] if t["name"] == template_name)
    if "container" not in template:
        raise ValueError(f"template {template_name!r} is not a container template")
    main = _merged(main_container or {}, {"name": "main", **template["container"]})
    main.setdefault("volumeMounts", []).append({"name": "var-run-argo", "mountPath": "/var/run/argo"})
    pod_spec: dict[str, Any] = {
        "serviceAccountName": template.get("serviceAccountName") or spec.get("serviceAccountName"),
        "initContainers": [executor_container("init", executor)],
        "containers": [executor_container("wait", executor), main],
        "volumes": [*copy.deepcopy(spec.get("volumes") or []), *copy.deepcopy(template.get("volumes") or [])]
        + [dict(v) for v in ARGO_VOLUMES],
    }
    security = template.get("securityContext") or spec.get("securityContext")
    if security:
        pod_spec["securityContext"] = copy.deepcopy(security)
    for key in ("nodeSelector", "tolerations", "affinity"):
        if template.get(key) or spec.get(key):
            pod_spec[key] = copy.deepcopy(template.get(key) or spec.get(key))
    patch = template.get("podSpecPatch") or spec.get("podSpecPatch")
    if patch:
        pod_spec = _apply_patch(pod_spec, json.loads(patch) if isinstance(patch, str) else patch)
    labels = {
        **(spec.get("podMetadata") or {}).get("labels", {}),
        **(template.get("metadata") or {}).get("labels", {}),
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": labels}, "spec": pod_spec}


def _apply_patch(pod_spec: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a strategic-merge-style podSpecPatch: containers merge by name, maps merge, the rest replaces."""
    out = copy.deepcopy(pod_spec)
    for key, value in patch.items():
        if key in ("containers", "initContainers") and isinstance(value, list):
            by_name = {c["name"]: c for c in out.get(key) or []}
            for patched in value:
                if patched["name"] in by_name:
                    by_name[patched["name"]].update(_merged(by_name[patched["name"]], patched))
                else:
                    out.setdefault(key, []).append(copy.deepcopy(patched))
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def container_templates(workflow: Mapping[str, Any]) -> list[str]:
    """Return the names of the workflow's container templates (each becomes pods)."""
    return [t["name"] for t in workflow["spec"]["templates"] if "container" in t]
