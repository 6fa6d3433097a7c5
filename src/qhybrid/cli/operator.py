"""``qhybrid operator run``: the QuantumJob operator (what the operator Deployment's pod runs)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from qhybrid.cli.options import StackChoice, stack_options
from qhybrid.cli.terminal import user_errors
from qhybrid.errors import InputError

operator_app = typer.Typer(no_args_is_help=True, help="The QuantumJob operator.")


@operator_app.command("run")
@stack_options
def run(
    stack: StackChoice,
    stack_config: Annotated[
        Path | None,
        typer.Option(help="The stack's config as JSON (the blueprint mounts it); instead of --stack."),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Namespace to watch.", show_default="the stack's workflowNamespace")
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Kubeconfig.", show_default="in-cluster, else $KUBECONFIG")
    ] = None,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port.")] = 9090,
    liveness_port: Annotated[int, typer.Option(help="Port of the /healthz liveness endpoint.")] = 8080,
) -> None:
    """Reconcile QuantumJobs into Argo Workflows until stopped (SIGTERM)."""
    from qhybrid.blueprint.config import stack_from_values
    from qhybrid.operator.handlers import run_operator
    from qhybrid.ops.kubeapi import KubeApi

    with user_errors():
        if stack_config is not None:
            try:
                values = json.loads(stack_config.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise InputError("--stack-config", f"{stack_config}: {error}") from None
            config = stack_from_values(values)
        else:
            config = stack.load()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_operator(
        config,
        namespace=namespace,
        metrics_port=metrics_port,
        liveness_port=liveness_port,
        kube=lambda: KubeApi.in_cluster_or_kubeconfig(kubeconfig),
    )
