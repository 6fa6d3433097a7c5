"""Replay a rendered Workflow on this machine: its step containers' args, in DAG order.

Each task's template is read from the Workflow object itself (not rebuilt), its
``withParam`` list taken from the output parameter file its producer wrote, its
``{{inputs.parameters.*}}``, ``{{item.*}}`` and ``{{workflow.name}}`` substituted
as Argo would, and its container args passed to the ``qhybrid`` command line, the
program the images' entrypoint runs. Paths inside the pod (the shared volume, the
emptyDirs) map to folders under one local root. This is the check that the
workflow computes what ``qhybrid run`` computes: same entry points, same plan.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qhybrid.errors import QhybridError
from qhybrid.workflow.build import PVC_MOUNT, S3_WORK
from qhybrid.workflow.checks import dag_order

_PARAM = re.compile(r"\{\{\s*inputs\.parameters\.([A-Za-z0-9_.-]+)\s*\}\}")
_ITEM = re.compile(r"\{\{\s*item\.([A-Za-z0-9_]+)\s*\}\}")
_TASK_OUTPUT = re.compile(r"\{\{\s*tasks\.([A-Za-z0-9-]+)\.outputs\.parameters\.([A-Za-z0-9_-]+)\s*\}\}")
StepRunner = Callable[[list[str]], int]


@dataclass
class Replay:
    """What a replay did: each pod's args (in order) and every output parameter by task."""

    run_dir: Path
    pods: list[list[str]] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)


def replay(
    workflow: Mapping[str, Any],
    root: Path,
    *,
    runner: StepRunner,
    name: str = "cutting-local",
    path_map: Mapping[str, Path | str] | None = None,
) -> Replay:
    """Run every pod of ``workflow`` under ``root`` in DAG order; return what ran.

    ``runner`` runs one pod's ``qhybrid`` args and returns the exit code (the CLI
    passes its own app, in-process; a test may start a process per pod).

    ``path_map`` maps further pod paths (or any arg prefix, such as the gateway's
    in-cluster URL) to local ones; the shared volume, /work and
    /tmp map to ``root``'s ``runs``, ``work`` and ``tmp`` (one /tmp for all pods, as
    only the producing pod reads its own output files).
    """
    mapping: dict[str, Path | str] = {
        PVC_MOUNT: root / "runs",
        S3_WORK: root / "work",
        "/tmp": root / "tmp",
        **(path_map or {}),
    }
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    done = Replay(run_dir=root)
    for task in dag_order(workflow):
        template = templates[task["template"]]
        given = (task.get("arguments") or {}).get("parameters") or []
        arguments = {p["name"]: p.get("value", "") for p in given}
        items: list[Any] = [None]
        if task.get("withParam"):
            items = json.loads(_outputs(task["withParam"], done.outputs))
        elif task.get("withItems"):
            items = list(task["withItems"])
        for raw in (template.get("inputs") or {}).get("artifacts") or []:
            if "raw" in raw:  # Argo writes a raw artifact's text to its path before the step starts
                target = Path(_localise(raw["path"], mapping))
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(raw["raw"]["data"], encoding="utf-8")
        for item in items:
            values = {key: _item(_outputs(value, done.outputs), item) for key, value in arguments.items()}
            args = [_localise(_fill(a, values, name), mapping) for a in template["container"].get("args", [])]
            done.pods.append(args)
            code = runner(args)
            if code != 0:
                raise QhybridError(f"task {task['name']} failed (exit code {code}): qhybrid {' '.join(args)}")
            for output in (template.get("outputs") or {}).get("parameters") or []:
                path = Path(_localise(_fill(output["valueFrom"]["path"], values, name), mapping))
                done.outputs.setdefault(task["name"], {})[output["name"]] = path.read_text(encoding="utf-8")
        if task["name"] == "generate":
            done.run_dir = Path(_localise(_fill(_flag(template, "--out"), {}, name), mapping))
    return done


def _flag(template: Mapping[str, Any], flag: str) -> str:
    args = template["container"]["args"]
    return str(args[args.index(flag) + 1])


def _outputs(text: str, outputs: Mapping[str, Mapping[str, str]]) -> str:
    def value(match: re.Match[str]) -> str:
        task, parameter = match.groups()
        return outputs[task][parameter]

    return _TASK_OUTPUT.sub(value, text)


def _item(text: str, item: Any) -> str:
    if item is None:
        return text
    return _ITEM.sub(lambda match: str(item[match.group(1)]), text)


def _fill(text: str, values: Mapping[str, str], workflow_name: str) -> str:
    text = text.replace("{{workflow.name}}", workflow_name)
    return _PARAM.sub(lambda match: values[match.group(1)], text)


def _localise(text: str, mapping: Mapping[str, Path | str]) -> str:
    for prefix in sorted(mapping, key=len, reverse=True):
        if text == prefix or text.startswith(prefix + "/"):
            return str(mapping[prefix]) + text[len(prefix) :]
    return text
