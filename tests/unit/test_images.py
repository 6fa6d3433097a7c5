"""Static checks of the container images, the Make targets that build them and the nightly workflow.

No Docker here: the Dockerfiles are parsed (a small parser below, Docker's own
rules for continuations and comments) and checked for what would break a pod
running as uid 10001 on a read-only root filesystem, a drifting tag, or a leaked
secret. `make -n` expands the Make targets exactly as make would run them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.integration.conftest import GRAFANA_PASSWORD_ENV, LOG_DIR_ENV, REQUIRE_CLUSTER_ENV

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
DOCKERFILES = sorted(IMAGES.glob("*.Dockerfile"))
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"

RUNTIME_USER = "10001:10001"
VENV = "/opt/venv"
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|PASSPHRASE|SECRET|KEY|CREDENTIAL", re.IGNORECASE)
KNOWN_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip
# python3 that each CUDA base's distribution ships (apt), for the requires-python check.
DISTRO_PYTHON = {"ubuntu20.04": "3.8", "ubuntu22.04": "3.10", "ubuntu24.04": "3.12"}


# --------------------------------------------------------------------------- parser


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form's argv, or None for the shell form."""
        text = self.value.strip()
        if not text.startswith("["):
            return None
        parsed = json.loads(text)
        assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), self
        return parsed


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            values.update(parse_assignments(instruction.value))
        return values

    def run_text(self) -> str:
        return "\n".join(i.value for i in self.all("RUN"))


def parse_dockerfile(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions: `\\` continues a line, `#` lines are comments."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and pending):
            continue  # comments (and blank lines) vanish, even inside a continued instruction
        if not stripped:
            continue
        if not pending:
            start = number
        if raw.rstrip().endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        pending.append(raw)
        joined = "".join(pending).strip()
        pending = []
        keyword, _, value = joined.partition(" ")
        if keyword.upper() != keyword:
            raise ValueError(f"line {start}: instruction {keyword!r} is not upper case")
        instructions.append(Instruction(keyword, value.strip(), start))
    if pending:
        raise ValueError("the file ends inside a continued instruction")
    return instructions


def stages_of(instructions: list[Instruction]) -> list[Stage]:
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.value.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), f"line {instruction.line}: FROM {instruction.value!r}"
            stages.append(Stage(base=words[0], name=name))
        elif instruction.keyword == "ARG" and not stages:
            continue  # global ARGs before the first FROM
        else:
            assert stages, f"line {instruction.line}: {instruction.keyword} before any FROM"
            stages[-1].instructions.append(instruction)
    return stages


def parse_assignments(value: str) -> dict[str, str]:
    """ENV/ARG arguments: `a=1 b="two words"`, the legacy `NAME value`, or a bare ARG name."""
    words = shlex.split(value)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) if "=" in word else (word, "") for word in words)


@cache
def dockerfile(name: str) -> list[Stage]:
    return stages_of(parse_dockerfile((IMAGES / name).read_text(encoding="utf-8")))


def effective_command(stage: Stage) -> list[str]:
    """ENTRYPOINT + CMD of a stage, both required in exec form (signals reach the process)."""
    entrypoint = stage.all("ENTRYPOINT")
    cmd = stage.all("CMD")
    assert entrypoint, "the final stage has no ENTRYPOINT"
    argv = entrypoint[-1].exec_form()
    assert argv is not None, f"line {entrypoint[-1].line}: ENTRYPOINT must use the exec (JSON) form"
    if cmd:
        cmd_argv = cmd[-1].exec_form()
        assert cmd_argv is not None, f"line {cmd[-1].line}: CMD must use the exec (JSON) form"
        argv = argv + cmd_argv
    return argv


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a RUN's shell script, split at && || ; | (quotes respected)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in {"&&", "||", ";", "|", "&", "(", ")"}:
            commands.append([])
        elif token not in {"{", "}", "!"}:
            commands[-1].append(token)
    return [c for c in commands if c]


def pip_calls(stage: Stage) -> list[tuple[str, list[str]]]:
    """Every `pip VERB ARGS` (or `python -m pip ...`) the stage runs, in order, as (VERB, ARGS)."""
    calls = []
    for instruction in stage.all("RUN"):
        for words in shell_commands(instruction.value):
            if words[:1] in (["python"], ["python3"]) and words[1:3] == ["-m", "pip"]:
                words = words[2:]
            if words[:1] == ["pip"] and len(words) > 1:
                calls.append((words[1], words[2:]))
    return calls


def pip_commands(stage: Stage, verb: str) -> list[list[str]]:
    return [args for v, args in pip_calls(stage) if v == verb]


def without_init(argv: list[str]) -> list[str]:
    if argv[:2] == ["tini", "--"]:
        return argv[2:]
    return argv


# --------------------------------------------------------------------------- project facts


@cache
def pulumi_defaults() -> dict[str, Any]:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    return {key: spec.get("default") for key, spec in project["config"].items()}


@cache
def image_keys() -> dict[str, str]:
    """Dockerfile name -> the Pulumi.yaml config key of its image, from the keys' descriptions."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    mapping = {}
    for key in ("workerImage", "gpuWorkerImage", "gatewayImage"):
        found = re.search(r"images/([\w.-]+\.Dockerfile)", project["config"][key]["description"])
        assert found, f"Pulumi.yaml: {key}'s description names no images/*.Dockerfile"
        mapping[found.group(1)] = key
    return mapping


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def dependency(name: str) -> Requirement:
    matches = [Requirement(d) for d in pyproject()["project"]["dependencies"] if Requirement(d).name == name]
    assert len(matches) == 1, f"pyproject.toml: {len(matches)} requirements on {name}"
    return matches[0]


def test_every_image_is_built():
    assert {p.name for p in DOCKERFILES} == set(image_keys()), "images/ and Pulumi.yaml disagree"


# --------------------------------------------------------------------------- Dockerfiles

names = [p.name for p in DOCKERFILES]


@pytest.mark.parametrize("name", names)
def test_dockerfile_parses_into_known_instructions(name):
    stages = dockerfile(name)
    assert len(stages) >= 2, "expected a build stage and a runtime stage"
    for stage in stages:
        for instruction in stage.instructions:
            assert instruction.keyword in KNOWN_INSTRUCTIONS, (
                f"line {instruction.line}: {instruction.keyword}"
            )


@pytest.mark.parametrize("name", names)
def test_base_images_are_pinned_to_an_exact_version(name):
    stages = dockerfile(name)
    stage_names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base in stage_names:
            continue
        reference, _, digest = stage.base.partition("@")
        repository, _, tag = (
            reference.rpartition(":") if ":" in reference.split("/")[-1] else (reference, "", "")
        )
        assert tag or digest, f"{stage.base}: no tag (that is `latest`)"
        assert tag != "latest", f"{stage.base}: `latest` moves"
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{stage.base}: pin a full version, not {tag!r}"


@pytest.mark.parametrize("name", names)
def test_runtime_stage_uses_the_build_stage_base(name):
    # The virtual environment's interpreter symlinks into the base image.
    builder, final = dockerfile(name)[0], dockerfile(name)[-1]
    assert final.base == builder.base


@pytest.mark.parametrize("name", names)
def test_python_of_the_base_satisfies_requires_python(name):
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    base = dockerfile(name)[-1].base
    if base.startswith("python:"):
        version = re.match(r"python:(\d+\.\d+\.\d+)", base)
        assert version, base
        python = version.group(1)
    else:
        distro = re.search(r"-(ubuntu\d+\.\d+)$", base)
        assert distro and distro.group(1) in DISTRO_PYTHON, f"{base}: unknown distribution"
        python = DISTRO_PYTHON[distro.group(1)]
        assert "python3" in dockerfile(name)[-1].run_text(), "the runtime stage installs no python3"
    assert Version(python) in requires, f"{base} ships Python {python}, outside requires-python {requires}"


@pytest.mark.parametrize("name", names)
def test_runs_as_the_non_root_runtime_user(name):
    final = dockerfile(name)[-1]
    users = final.all("USER")
    assert users and users[-1].value == RUNTIME_USER, f"the last USER must be {RUNTIME_USER}"
    uid, gid = RUNTIME_USER.split(":")
    setup = final.run_text()
    assert re.search(rf"useradd\b[^\n]*--uid {uid}\b", setup), (
        "the runtime stage creates no user with that uid"
    )
    assert re.search(rf"groupadd\b[^\n]*--gid {gid}\b", setup), (
        "the runtime stage creates no group with that gid"
    )


@pytest.mark.parametrize("name", names)
def test_writes_only_under_tmp(name):
    env = dockerfile(name)[-1].env()
    for variable in ("HOME", "MPLCONFIGDIR", "XDG_CACHE_HOME"):
        assert env.get(variable, "").startswith("/tmp"), (
            f"{variable} must point under /tmp (read-only rootfs)"
        )


@pytest.mark.parametrize("name", names)
def test_no_secret_in_env_or_build_args(name):
    for stage in dockerfile(name):
        for instruction in stage.all("ENV") + stage.all("ARG"):
            for variable in parse_assignments(instruction.value):
                assert not SECRET_NAME.search(variable), (
                    f"line {instruction.line}: {variable} looks like a secret"
                )


@pytest.mark.parametrize("name", names)
def test_installs_the_project_into_the_venv_on_path(name):
    builder, final = dockerfile(name)[0], dockerfile(name)[-1]
    runs = builder.run_text()
    assert re.search(rf"-m venv {VENV}\b", runs), f"the build stage creates no venv at {VENV}"
    project = re.compile(r"\.(\[[\w,-]+\])?")  # the checkout, with or without extras
    installs = pip_commands(builder, "install")
    assert any(project.fullmatch(a) for args in installs for a in args), (
        "the build stage never runs `pip install .`"
    )
    assert builder.env().get("PATH", "").startswith(f"{VENV}/bin:"), "the build stage's pip is not the venv's"
    copies = [i.value.split() for i in final.all("COPY")]
    assert ["--from=" + (builder.name or "0"), VENV, VENV] in copies, (
        "the runtime stage does not copy the venv"
    )
    assert final.env().get("PATH", "").startswith(f"{VENV}/bin:"), "qhybrid is not on the runtime PATH"


@pytest.mark.parametrize("name", names)
def test_build_stage_copies_what_setuptools_reads(name):
    builder = dockerfile(name)[0]
    copied = set()
    for instruction in builder.all("COPY"):
        words = [w for w in instruction.value.split() if not w.startswith("--")]
        copied.update(Path(w).as_posix().rstrip("/") for w in words[:-1])
    project = pyproject()
    needed = {"pyproject.toml", project["project"]["readme"]}
    setuptools = project["tool"]["setuptools"]
    for package, folder in setuptools["package-dir"].items():
        if Path(folder).parts:
            needed.add(Path(folder).parts[0])
        else:  # the repository root itself (qhybrid.project): only its package data is read
            needed |= {Path(pattern).parts[0] for pattern in setuptools["package-data"][package]}
    assert needed <= copied, f"the build stage misses {sorted(needed - copied)}"


@pytest.mark.parametrize("name", names)
def test_entrypoint_runs_qhybrid(name):
    argv = without_init(effective_command(dockerfile(name)[-1]))
    assert argv and argv[0] == "qhybrid", f"the image runs {argv}, not qhybrid"
    final_runs = dockerfile(name)[-1].run_text()
    if "tini" in effective_command(dockerfile(name)[-1]):
        assert re.search(r"apt-get install[^\n]*\btini\b", final_runs), (
            "tini is the entry point but not installed"
        )


def test_gateway_serves_on_the_stack_port():
    final = dockerfile("gateway.Dockerfile")[-1]
    port = str(pulumi_defaults()["gatewayPort"])
    argv = without_init(effective_command(final))
    assert argv == ["qhybrid", "gateway", "serve", "--host", "0.0.0.0", "--port", port]
    assert [i.value for i in final.all("EXPOSE")] == [port]


def test_the_operator_runs_from_the_worker_image_with_a_command_it_has(tmp_path):
    from qhybrid.blueprint.config import load_stack_file
    from qhybrid.blueprint.quantumjob import CONFIG_FILE, deployment, quantumjob_objects
    from tests.conftest import invoke

    config = load_stack_file("kind")
    pod = deployment(config)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == config.worker_image
    assert "command" not in container, "setting command would replace tini"
    entrypoint = dockerfile("worker.Dockerfile")[-1].all("ENTRYPOINT")[-1].exec_form()
    assert entrypoint is not None
    argv = without_init(entrypoint + container["args"])
    assert argv[:3] == ["qhybrid", "operator", "run"]
    # What the pod runs parses: every flag exists, and the mounted stack config is read back whole.
    [config_map] = [o for o in quantumjob_objects(config) if o["kind"] == "ConfigMap"]
    stack_json = tmp_path / CONFIG_FILE
    stack_json.write_text(config_map["data"][CONFIG_FILE])
    help_text = invoke("operator", "run", "--help").stdout
    for flag in (a for a in argv[3:] if a.startswith("--")):
        assert flag in help_text, flag
    from qhybrid.blueprint.config import stack_from_values

    assert stack_from_values(json.loads(stack_json.read_text())) == config


@pytest.mark.parametrize("name", ["worker.Dockerfile", "gateway.Dockerfile"])
def test_cpu_images_keep_the_cpu_simulator(name):
    text = (IMAGES / name).read_text(encoding="utf-8")
    assert "qiskit-aer-gpu" not in text
    assert not dockerfile(name)[-1].base.startswith("nvidia/")


def test_gpu_image_swaps_qiskit_aer_for_qiskit_aer_gpu():
    stages = dockerfile("worker-gpu.Dockerfile")
    assert re.match(r"nvidia/cuda:12\.\d+\.\d+-", stages[-1].base), "not a CUDA 12 base"
    order = pip_calls(stages[0])

    def position(verb: str, arg: str) -> int:
        hits = [n for n, (v, args) in enumerate(order) if v == verb and arg in args]
        assert hits, f"the build stage never runs `pip {verb} ... {arg}`"
        return hits[0]

    project, removed, gpu = (
        position("install", "."),
        position("uninstall", "qiskit-aer"),
        position("install", "-r"),
    )
    assert project < removed < gpu, "the CPU Aer must be removed after the project, before the GPU Aer lands"
    for verb, args in order:
        named = [a for a in args if re.match(r"qiskit-aer(?![-\w])", a)]
        assert verb == "uninstall" or not named, f"pip install names the CPU qiskit-aer: {args}"
    assert "md.version('qiskit-aer')" in stages[-1].run_text(), "no build-time proof that the CPU Aer is gone"


def test_gpu_requirement_is_derived_from_pyproject():
    # Run the Dockerfile's own snippet against this pyproject: the GPU build must get
    # exactly qiskit-aer's range, so a bump of qiskit-aer cannot leave the GPU image behind.
    runs = dockerfile("worker-gpu.Dockerfile")[0].all("RUN")
    snippet_run = next(i for i in runs if "requirements-gpu.txt" in i.value and "tomllib" in i.value)
    words = shlex.split(snippet_run.value)
    script = words[words.index("-c") + 1]
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    lines = result.stdout.split()
    assert len(lines) == 1, lines
    produced, expected = Requirement(lines[0]), dependency("qiskit-aer")
    assert produced.name == "qiskit-aer-gpu"
    assert produced.specifier == expected.specifier


# --------------------------------------------------------------------------- .dockerignore


def _ignore_rules() -> list[tuple[re.Pattern[str], bool]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
                end = pattern.index("]", i + 1)
                regex, i = regex + pattern[i : end + 1], end + 1  # a character class, as in Go's Match
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((re.compile(regex), negate))
    return rules


def ignored(path: str) -> bool:
    """Docker's rule: a pattern matching a path or any parent excludes it; the last match wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for regex, negate in _ignore_rules():
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "runs/cutting-0/manifest.json",
        ".pytest_cache/v/cache/nodeids",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/x",
        "qhybrid.egg-info/PKG-INFO",
        "src/qhybrid/__pycache__/cli.cpython-311.pyc",
        "src/qhybrid/stray.pyc",
        "tests/conftest.py",
        "infra/__main__.py",
    ],
)
def test_dockerignore_keeps_out(path):
    assert ignored(path)


def test_dockerignore_lets_in_what_the_images_copy():
    for name in names:
        for stage in dockerfile(name):
            for instruction in stage.all("COPY"):
                if "--from=" in instruction.value:
                    continue
                for source in instruction.value.split()[:-1]:
                    files = [source] if (ROOT / source).is_file() else [
                        p.relative_to(ROOT).as_posix() for p in (ROOT / source).rglob("*")
                        if p.suffix in (".py", ".yaml", ".json")
                    ]  # fmt: skip
                    assert files, f"{name}: COPY {source}: nothing there"
                    kept_out = [f for f in files if ignored(f)]
                    assert not kept_out, f"{name}: .dockerignore drops {kept_out[:3]}"


# --------------------------------------------------------------------------- Makefile


MAKE_OVERRIDES = ("DOCKER", "KIND", "KIND_CLUSTER", "WORKER_IMAGE", "GPU_WORKER_IMAGE", "GATEWAY_IMAGE")


def make_dry_run(*args: str) -> list[list[str]]:
    if shutil.which("make") is None:
        pytest.fail("make is not installed; the Makefile is the project's entry point")
    env = {k: v for k, v in os.environ.items() if k not in MAKE_OVERRIDES and not k.startswith("MAKE")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines() if line.strip()]


def test_make_images_tags_match_the_stack_defaults():
    builds = [argv for argv in make_dry_run("images") if argv[:2] == ["docker", "build"]]
    built = {}
    for argv in builds:
        assert "--build-arg" not in argv, f"build args carry no values into images: {argv}"
        assert argv[-1] == ".", f"the build context must be the repository root: {argv}"
        built[Path(argv[argv.index("-f") + 1]).name] = argv[argv.index("-t") + 1]
    defaults = pulumi_defaults()
    assert built == {name: defaults[key] for name, key in image_keys().items()}


def test_make_kind_load_loads_every_image_into_the_stack_cluster():
    (argv,) = make_dry_run("kind-load")
    assert argv[:3] == ["kind", "load", "docker-image"]
    assert argv[argv.index("--name") + 1] == pulumi_defaults()["clusterName"]
    images = [a for a in argv[3:] if not a.startswith("--") and a != argv[argv.index("--name") + 1]]
    assert sorted(images) == sorted(pulumi_defaults()[key] for key in image_keys().values())
    (overridden,) = make_dry_run("kind-load", "KIND_CLUSTER=elsewhere")
    assert overridden[overridden.index("--name") + 1] == "elsewhere"


def test_make_help_lists_the_image_targets_aligned():
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    phony = re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE)
    assert phony and {"images", "kind-load"} <= set(phony.group(1).split())
    result = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    rows = [re.match(r"^  (\S+)\s+(\S.*)$", line) for line in result.stdout.splitlines()]
    assert all(rows), result.stdout
    assert {"images", "kind-load"} <= {row.group(1) for row in rows if row}
    columns = {row.start(2) for row in rows if row}
    assert len(columns) == 1, f"help descriptions start at columns {sorted(columns)}:\n{result.stdout}"


# --------------------------------------------------------------------------- nightly workflow


@cache
def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def kind_stack_job() -> dict[str, Any]:
    return workflow()["jobs"]["kind-stack"]


def test_workflow_runs_nightly_and_on_demand():
    triggers = workflow().get("on", workflow().get(True))  # YAML 1.1 reads a bare `on` as True
    assert triggers["schedule"] and all(len(s["cron"].split()) == 5 for s in triggers["schedule"])
    assert "workflow_dispatch" in triggers


def test_kind_stack_job_runs_the_cluster_tests_for_real_with_a_timeout():
    job = kind_stack_job()
    assert isinstance(job["timeout-minutes"], int) and 0 < job["timeout-minutes"] <= 360
    runs = [step.get("run", "") for step in job["steps"]]

    def first(pattern: str) -> int:
        hits = [n for n, run in enumerate(runs) if re.search(pattern, run)]
        assert hits, f"no step runs {pattern!r}"
        return hits[0]

    test_step = job["steps"][first(r"pytest\b[^\n]*-m cluster\b[^\n]*tests/integration")]
    assert first(r"make setup") < first(r"make images") < first(r"pytest\b[^\n]*-m cluster")
    assert first(r"get\.pulumi\.com") < first(r"pytest\b[^\n]*-m cluster")
    assert first(r"kind-linux-amd64") < first(r"pytest\b[^\n]*-m cluster")
    # Missing tools must fail the nightly, not skip it.
    assert str(test_step.get("env", {}).get(REQUIRE_CLUSTER_ENV)) == "1"
    assert "timeout-minutes" in test_step
    assert "--junitxml" in test_step["run"]


def test_workflow_pins_its_tools_and_actions():
    text = WORKFLOW.read_text(encoding="utf-8")
    kind_version = workflow()["env"]["KIND_VERSION"]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", kind_version), kind_version
    for step in kind_stack_job()["steps"]:
        if "uses" in step:
            assert re.search(r"@(v\d+(\.\d+)*|[0-9a-f]{40})$", step["uses"]), (
                f"unpinned action {step['uses']}"
            )
    assert "@main" not in text and "@master" not in text


def test_workflow_generates_secrets_at_run_time_and_masks_them():
    def envs(node: Any):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "env" and isinstance(value, dict):
                    yield value
                else:
                    yield from envs(value)
        elif isinstance(node, list):
            for item in node:
                yield from envs(item)

    for env in envs(workflow()):
        for name, value in env.items():
            if SECRET_NAME.search(name):
                assert str(value).startswith("${{"), f"{name} is a literal in the workflow"
    text = WORKFLOW.read_text(encoding="utf-8")
    for variable in ("PULUMI_CONFIG_PASSPHRASE", GRAFANA_PASSWORD_ENV):
        assert re.search(rf"{variable}=\$\w+", text), f"{variable} is not generated at run time"
    assert re.search(rf"{LOG_DIR_ENV}=\S+", text), "the test's logs and dumps land nowhere the upload finds"
    assert "PULUMI_BACKEND_URL=file://" in text, "the nightly must use a local file backend"
    assert text.count("::add-mask::") >= 2
    assert "openssl rand" in text


def test_workflow_uploads_artifacts_even_on_failure():
    uploads = [
        s for s in kind_stack_job()["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")
    ]
    assert uploads and all("always()" in str(s.get("if", "")) for s in uploads)
    dumps = [s for s in kind_stack_job()["steps"] if "kubectl get all -A" in s.get("run", "")]
    assert dumps and all("failure()" in str(s.get("if", "")) for s in dumps)
