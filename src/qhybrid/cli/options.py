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
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from qhybrid.backends.qpu import DEFAULT_JOB_TIMEOUT_S, DEFAULT_MAX_ATTEMPTS, GatewaySettings
from qhybrid.cli.errors import user_errors
from qhybrid.spec import PROBLEM_FLAG_HELP, ProblemFlags

Command = TypeVar("Command", bound=Callable[..., Any])
_PROBLEM_TYPES: dict[str, Any] = {
    "qubits": int,
    "reps": int,
    "circuit": Path,
    "observable": str,
    "partition": str,
    "max_width": int,
    "mode": str,
    "shots": int,
    "seed": int,
    "policy": str,
}
_PROBLEM_PANEL = "Problem"
_GATEWAY_PANEL = "QPU gateway"


def _problem_option(name: str) -> Any:
    help_text, shown_default = PROBLEM_FLAG_HELP[name]
    option = typer.Option(
        help=help_text,
        show_default=shown_default if shown_default is not None else False,
        rich_help_panel=_PROBLEM_PANEL,
    )
    return Annotated[_PROBLEM_TYPES[name] | None, option]


PROBLEM_OPTIONS: dict[str, Any] = {name: _problem_option(name) for name in PROBLEM_FLAG_HELP}

GATEWAY_OPTIONS: dict[str, tuple[Any, Any]] = {
    # parameter: (annotation, default)
    "gateway_url": (
        Annotated[
            str | None,
            typer.Option(
                envvar="QHYBRID_GATEWAY_URL",
                help="QPU gateway URL for the qpu backend (policy width).",
                show_default="none: the qpu backend refuses to start",
                rich_help_panel=_GATEWAY_PANEL,
            ),
        ],
        None,
    ),
    "gateway_token_file": (
        Annotated[
            Path | None,
            typer.Option(
                envvar="QHYBRID_GATEWAY_TOKEN_FILE",
                help="File holding this workflow's bearer token for the gateway.",
                rich_help_panel=_GATEWAY_PANEL,
            ),
        ],
        None,
    ),
    "gateway_backend": (
        Annotated[
            str | None,
            typer.Option(
                envvar="QHYBRID_GATEWAY_BACKEND",
                help="Gateway backend to use.",
                show_default="the gateway's default",
                rich_help_panel=_GATEWAY_PANEL,
            ),
        ],
        None,
    ),
    "gateway_max_attempts": (
        Annotated[
            int,
            typer.Option(
                envvar="QHYBRID_GATEWAY_MAX_ATTEMPTS",
                help="Attempts per gateway call before the subexperiments fail over.",
                rich_help_panel=_GATEWAY_PANEL,
            ),
        ],
        DEFAULT_MAX_ATTEMPTS,
    ),
    "gateway_job_timeout": (
        Annotated[
            float,
            typer.Option(
                envvar="QHYBRID_GATEWAY_JOB_TIMEOUT",
                help="Seconds to wait for one gateway job.",
                rich_help_panel=_GATEWAY_PANEL,
            ),
        ],
        DEFAULT_JOB_TIMEOUT_S,
    ),
}


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
    extra = {name: (annotation, None) for name, annotation in PROBLEM_OPTIONS.items()}
    return _with_parameters(command, "problem", extra, lambda values: ProblemFlags(**values))


def gateway_options(command: Command) -> Command:
    """Give ``command`` the gateway flags; it receives them as ``gateway: GatewaySettings``."""

    def build(values: dict[str, Any]) -> GatewaySettings:
        return GatewaySettings(
            url=values["gateway_url"],
            token_file=values["gateway_token_file"],
            backend=values["gateway_backend"],
            max_attempts=values["gateway_max_attempts"],
            job_timeout_s=values["gateway_job_timeout"],
        )

    return _with_parameters(command, "gateway", GATEWAY_OPTIONS, build)


Stack = Annotated[str, typer.Option(help="Stack name: stacks/Pulumi.<stack>.yaml of the project.")]
ProjectDir = Annotated[
    Path | None,
    typer.Option(
        envvar="QHYBRID_PROJECT_DIR",
        help="Folder holding Pulumi.yaml and stacks/.",
        show_default="the current folder if it holds qhybrid's Pulumi.yaml, else the copy qhybrid ships",
    ),
]
PerPod = Annotated[
    int | None,
    typer.Option(
        help="Subexperiments per pod (1: the paper's plan).", show_default="one batch per quota slot"
    ),
]
