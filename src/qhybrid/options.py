"""Command-line options shared by ``qhybrid run``, ``qhybrid step`` and ``qhybrid workflow``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SCENARIO_NAME = "cutting"
DEFAULT_SHOTS = 4096

Qubits = Annotated[int | None, typer.Option(help="Qubits of the reference circuit [default: 10].")]
Reps = Annotated[int | None, typer.Option(help="Repetitions of the reference ansatz [default: 3].")]
CircuitFile = Annotated[Path | None, typer.Option("--circuit", help="Your circuit, OpenQASM 2 or 3.")]
ObservableText = Annotated[
    str | None,
    typer.Option(help='Pauli sum such as "0.5*ZZII + XIXI" (Qiskit order), or a file holding one.'),
]
Partition = Annotated[
    str | None, typer.Option(help="One partition label per qubit, qubit 0 first, e.g. AAAAABBBBB.")
]
MaxWidth = Annotated[int | None, typer.Option(help="Find cuts automatically so no subcircuit is wider.")]
ModeOption = Annotated[str | None, typer.Option("--mode", help="exact | sampled [default: exact].")]
Shots = Annotated[
    int | None, typer.Option(help=f"Shots per subexperiment in sampled mode [default: {DEFAULT_SHOTS}].")
]
Seed = Annotated[int | None, typer.Option(help="Run seed; every random choice derives from it [default: 0].")]
PolicyOption = Annotated[
    str | None, typer.Option("--policy", help="Backend policy: cpu | gpu | width [default: cpu].")
]
GatewayUrl = Annotated[
    str | None,
    typer.Option(envvar="QHYBRID_GATEWAY_URL", help="QPU gateway URL for the qpu backend (policy width)."),
]
GatewayTokenFile = Annotated[
    Path | None,
    typer.Option(
        envvar="QHYBRID_GATEWAY_TOKEN_FILE", help="File holding this workflow's bearer token for the gateway."
    ),
]
GatewayBackend = Annotated[
    str | None,
    typer.Option(envvar="QHYBRID_GATEWAY_BACKEND", help="Gateway backend to use [default: the gateway's]."),
]
