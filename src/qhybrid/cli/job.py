"""``qhybrid job render``: write a QuantumJob (``kubectl apply -f``) for a problem."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from qhybrid.backends.qpu import DEFAULT_FAILOVER
from qhybrid.cli.options import problem_options
from qhybrid.cli.terminal import user_errors
from qhybrid.errors import InputError
from qhybrid.spec import ProblemFlags

job_app = typer.Typer(no_args_is_help=True, help="QuantumJob custom resources.")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@job_app.command("render")
@problem_options
def render(
    problem: ProblemFlags,
    name: Annotated[str, typer.Option(help="The QuantumJob's name (an RFC 1123 label).")] = "cutting",
    namespace: Annotated[str | None, typer.Option(help="Its namespace.", show_default="kubectl's")] = None,
    failover: Annotated[str, typer.Option(help="never | transient | always.")] = DEFAULT_FAILOVER,
    cache: Annotated[bool, typer.Option(help="Use the shared result cache.")] = True,
    priority_class: Annotated[str | None, typer.Option(help="A Kueue WorkloadPriorityClass.")] = None,
    shot_budget: Annotated[int | None, typer.Option(help="Most QPU shots the job may spend.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Write the QuantumJob that runs this problem, for ``kubectl apply -f``."""
    from qhybrid.operator.render import job_from_spec
    from qhybrid.spec import spec_from_flags

    with user_errors():
        if not _NAME.match(name):
            raise InputError("--name", f"{name!r} is not a Kubernetes name (lower case, digits, '-')")
        job = job_from_spec(
            spec_from_flags(problem), name, namespace=namespace, failover=failover, cache=cache,
            priority_class=priority_class, shot_budget=shot_budget,
        )  # fmt: skip
    text = yaml.safe_dump(job, sort_keys=False)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
