"""Options shared by several commands, each declared once.

The problem flags (``--qubits`` ... ``--policy``) and the gateway flags appear in
several commands (``run cutting``, ``step generate``, ``workflow render|replay|
submit``). Rather than repeating ten parameters in five signatures, a command
takes one ``problem: ProblemFlags`` (or ``gateway: GatewaySettings``) parameter
and the decorators here put the individual options into its signature for typer.
Their help and defaults come from :mod:`qhybrid.spec` and
:mod:`qhybrid.backends.qpu`, so ``--help`` shows the defaults the code uses.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from qhybrid.backends.qpu import DEFAULT_JOB_TIMEOUT_S, DEFAULT_MAX_ATTEMPTS, GatewaySettings
from qhybrid.cache.session import CacheSettings
from qhybrid.cache.stores import DEFAULT_MAX_BYTES
from qhybrid.cli.terminal import user_errors
from qhybrid.cutting.policies import DEFAULT_FAILOVER
from qhybrid.errors import InputError
from qhybrid.spec import PROBLEM_FLAGS, ProblemFlag, ProblemFlags

if TYPE_CHECKING:
    from qhybrid.blueprint.config import StackConfig

Command = TypeVar("Command", bound=Callable[..., Any])
_PROBLEM_PANEL = "Problem"
_GATEWAY_PANEL = "QPU gateway"


def _problem_option(flag: ProblemFlag) -> tuple[Any, Any]:
    """Return (annotation, default) of one problem flag's option: every one defaults to "not given"."""
    option = typer.Option(
        help=flag.help,
        show_default=flag.shown_default if flag.shown_default is not None else False,
        rich_help_panel=_PROBLEM_PANEL,
    )
    return Annotated[flag.type | None, option], None


PROBLEM_OPTIONS: dict[str, tuple[Any, Any]] = {flag.name: _problem_option(flag) for flag in PROBLEM_FLAGS}


def _gateway_option(
    kind: Any, default: Any, suffix: str, help_text: str, shown: str | bool = True
) -> tuple[Any, Any]:
    """Return (annotation, default) of ``--gateway-<suffix>``, also read from QHYBRID_GATEWAY_<SUFFIX>."""
    option = typer.Option(
        envvar="QHYBRID_GATEWAY_" + suffix.upper().replace("-", "_"),
        help=help_text,
        show_default=shown,
        rich_help_panel=_GATEWAY_PANEL,
    )
    return Annotated[kind, option], default


GATEWAY_OPTIONS: dict[str, tuple[Any, Any]] = {
    "gateway_url": _gateway_option(
        str | None, None, "url", "QPU gateway URL for the qpu backend (policy width).",
        "none: the qpu backend refuses to start",
    ),
    "gateway_token_file": _gateway_option(
        Path | None, None, "token-file", "File holding this workflow's bearer token for the gateway.", False
    ),
    "gateway_backend": _gateway_option(
        str | None, None, "backend", "Gateway backend to use.", "the gateway's default"
    ),
    "gateway_max_attempts": _gateway_option(
        int, DEFAULT_MAX_ATTEMPTS, "max-attempts",
        "Attempts per gateway call before the subexperiments fail over.",
    ),
    "gateway_job_timeout": _gateway_option(
        float, DEFAULT_JOB_TIMEOUT_S, "job-timeout", "Seconds to wait for one gateway job."
    ),
    "failover": (
        Annotated[
            str,
            typer.Option(
                envvar="QHYBRID_FAILOVER",
                help="When qpu subexperiments may move to the policy's simulator: never | transient "
                "(unreachable, overloaded, timed out) | always.",
                rich_help_panel=_GATEWAY_PANEL,
            ),
        ],
        DEFAULT_FAILOVER,
    ),
}  # fmt: skip
_CACHE_PANEL = "Result cache"


def _cache_location_option(shown: str) -> tuple[Any, Any]:
    option = typer.Option(
        envvar="QHYBRID_CACHE",
        help="Result cache: an LMDB folder, or redis://host:port/db (Redis or Valkey); off: none.",
        show_default=shown,
        rich_help_panel=_CACHE_PANEL,
    )
    return Annotated[str | None, option], None


CACHE_OPTIONS: dict[str, tuple[Any, Any]] = {
    "cache": _cache_location_option("$XDG_CACHE_HOME/qhybrid/results.lmdb"),
    "no_cache": (
        Annotated[
            bool, typer.Option("--no-cache", help="Use no result cache.", rich_help_panel=_CACHE_PANEL)
        ],
        False,
    ),
    "cache_max_mib": (
        Annotated[
            int,
            typer.Option(
                envvar="QHYBRID_CACHE_MAX_MIB",
                help="Size bound of an LMDB cache (MiB): least recently used entries go first.",
                rich_help_panel=_CACHE_PANEL,
            ),
        ],
        DEFAULT_MAX_BYTES >> 20,
    ),
}  # fmt: skip
STACK_OPTIONS: dict[str, tuple[Any, Any]] = {
    "stack": (
        Annotated[str, typer.Option(help="Stack name: stacks/Pulumi.<stack>.yaml of the project.")],
        "kind",
    ),
    "project_dir": (
        Annotated[
            Path | None,
            typer.Option(
                envvar="QHYBRID_PROJECT_DIR",
                help="Folder holding Pulumi.yaml and stacks/.",
                show_default="the current folder if it holds qhybrid's Pulumi.yaml, else the copy shipped",
            ),
        ],
        None,
    ),
}


CLUSTER_OPTIONS: dict[str, tuple[Any, Any]] = {
    "kubeconfig": (
        Annotated[
            Path | None, typer.Option(help="Kubeconfig.", show_default="$KUBECONFIG or ~/.kube/config")
        ],
        None,
    ),
    "context": (
        Annotated[str | None, typer.Option(help="Kubeconfig context.", show_default="the current context")],
        None,
    ),
}


@dataclass(frozen=True)
class ClusterAccess:
    """Which cluster to talk to: a kubeconfig (None: the usual lookup) and a context in it."""

    kubeconfig: Path | None
    context: str | None

    def custom_objects_api(self) -> Any:
        """Return a Kubernetes CustomObjectsApi for this cluster."""
        from qhybrid.workflow.submit import custom_objects_api

        return custom_objects_api(None if self.kubeconfig is None else str(self.kubeconfig), self.context)


@dataclass(frozen=True)
class StackChoice:
    """Which stack's config to load, and from which project folder (None: find it)."""

    name: str
    project_dir: Path | None

    def load(self) -> StackConfig:
        """Load and validate the stack's config."""
        from qhybrid.blueprint.config import load_stack_file

        return load_stack_file(self.name, project_dir=self.project_dir)


def _with_parameters(
    command: Command, target: str, extra: dict[str, tuple[Any, Any]], build: Callable[[dict[str, Any]], Any]
) -> Command:
    """Replace ``command``'s parameter ``target`` by the ``extra`` options; build it from their values."""
    signature = inspect.signature(command, eval_str=True)
    if target not in signature.parameters:
        raise TypeError(f"{command.__name__} has no parameter {target!r}")
    kept = [p for p in signature.parameters.values() if p.name != target]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in extra.items()
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in extra}
        with user_errors():
            built = build(values)
        return command(*args, **{target: built}, **kwargs)

    # typer reads the signature: the options stand where the one parameter stood.
    positional = [p for p in kept if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    keyword = [p for p in kept if p.kind is inspect.Parameter.KEYWORD_ONLY]
    parameters = [*positional, *keyword, *added]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__
    return wrapper  # type: ignore[return-value]


def problem_options(command: Command) -> Command:
    """Give ``command`` the problem flags; it receives them as ``problem: ProblemFlags``."""
    return _with_parameters(command, "problem", PROBLEM_OPTIONS, lambda values: ProblemFlags(values))


def gateway_options(command: Command) -> Command:
    """Give ``command`` the gateway flags; it receives them as ``gateway: GatewaySettings``."""

    def build(values: dict[str, Any]) -> GatewaySettings:
        return GatewaySettings(
            url=values["gateway_url"],
            token_file=values["gateway_token_file"],
            backend=values["gateway_backend"],
            max_attempts=values["gateway_max_attempts"],
            job_timeout_s=values["gateway_job_timeout"],
            failover=values["failover"],
        )

    return _with_parameters(command, "gateway", GATEWAY_OPTIONS, build)


def cache_options(command: Command) -> Command:
    """Give ``command`` --cache and --no-cache (default: the embedded cache) as ``cache: CacheSettings``."""
    return _cache_options(command, CACHE_OPTIONS, default_on=True)


def step_cache_options(command: Command) -> Command:
    """Like :func:`cache_options`, but off unless --cache is given (a workflow step names its cache)."""
    extra = {**CACHE_OPTIONS, "cache": _cache_location_option("none")}
    return _cache_options(command, extra, default_on=False)


def _cache_options(command: Command, extra: dict[str, tuple[Any, Any]], *, default_on: bool) -> Command:
    def build(values: dict[str, Any]) -> CacheSettings:
        location = values["cache"]
        if values["no_cache"] or (location is None and not default_on):
            return CacheSettings(enabled=False)
        if location is not None and location.strip().lower() in ("off", "none", ""):
            return CacheSettings(enabled=False)
        max_mib = values["cache_max_mib"]
        if max_mib < 1:
            raise InputError("--cache-max-mib", f"must be at least 1, got {max_mib}")
        return CacheSettings(location=location, max_bytes=max_mib << 20)

    return _with_parameters(command, "cache", extra, build)


def gateway_client_options(command: Command) -> Command:
    """Give ``command`` --gateway-url and --gateway-token-file; it receives ``gateway: GatewaySettings``."""
    extra = {name: GATEWAY_OPTIONS[name] for name in ("gateway_url", "gateway_token_file")}

    def build(values: dict[str, Any]) -> GatewaySettings:
        return GatewaySettings(url=values["gateway_url"], token_file=values["gateway_token_file"])

    return _with_parameters(command, "gateway", extra, build)


def stack_options(command: Command) -> Command:
    """Give ``command`` --stack and --project-dir; it receives them as ``stack: StackChoice``."""
    return _with_parameters(
        command, "stack", STACK_OPTIONS, lambda values: StackChoice(values["stack"], values["project_dir"])
    )


def cluster_options(command: Command) -> Command:
    """Give ``command`` --kubeconfig and --context; it receives them as ``cluster: ClusterAccess``."""
    return _with_parameters(
        command,
        "cluster",
        CLUSTER_OPTIONS,
        lambda values: ClusterAccess(values["kubeconfig"], values["context"]),
    )


PER_POD_OPTION: dict[str, tuple[Any, Any]] = {
    "per_pod": (
        Annotated[
            int | None,
            typer.Option(
                help="Subexperiments per pod (1: the paper's plan).", show_default="one batch per quota slot"
            ),
        ],
        None,
    )
}


@dataclass(frozen=True)
class WorkflowTarget:
    """Where a cutting workflow will run (a stack) and how its branches are batched."""

    stack: StackChoice
    per_pod: int | None

    def render(self, problem: ProblemFlags) -> dict[str, Any]:
        """Return the Workflow dict of ``problem`` after the structural checks; problems are a user error."""
        from qhybrid.spec import spec_from_flags
        from qhybrid.workflow.build import workflow_object
        from qhybrid.workflow.checks import check_workflow

        config = self.stack.load()
        workflow = workflow_object(config, spec_from_flags(problem), per_pod=self.per_pod)
        problems = check_workflow(workflow, config)
        if problems:
            raise InputError("workflow", "; ".join(problems))
        return workflow


def workflow_options(command: Command) -> Command:
    """Give ``command`` --stack, --project-dir and --per-pod; it receives ``target: WorkflowTarget``."""

    def build(values: dict[str, Any]) -> WorkflowTarget:
        return WorkflowTarget(StackChoice(values["stack"], values["project_dir"]), values["per_pod"])

    return _with_parameters(command, "target", {**STACK_OPTIONS, **PER_POD_OPTION}, build)
