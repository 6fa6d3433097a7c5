"""What the command line prints: a user error as one line on stderr (exit 2), a run's summary.

Also how one command runs another in this process (a replayed workflow's pods).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from qhybrid.errors import QhybridError

EXIT_USER_ERROR = 2


def fail(message: str) -> typer.Exit:
    """Print ``qhybrid: error: MESSAGE`` (on one line) and return the Exit to raise."""
    sys.stderr.write(f"qhybrid: error: {' '.join(message.split())}\n")
    return typer.Exit(EXIT_USER_ERROR)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a QhybridError into one unwrapped line on stderr and exit code 2."""
    try:
        yield
    except QhybridError as error:
        raise fail(str(error)) from None


def run_command(command: Any, args: list[str]) -> int:
    """Run ``command`` (the root ``qhybrid`` command, say) with ``args`` here; return its exit code."""
    try:
        # Without standalone mode click returns an Exit's code instead of exiting.
        code = command.main(args=args, prog_name="qhybrid", standalone_mode=False)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return int(code or 0)


def print_report(report: dict[str, Any], report_file: Path | None = None) -> None:
    """Print a run's summary, and where its report.json is when it was written."""
    from qhybrid.pipeline.report import summary_text

    sys.stdout.write(summary_text(report))
    if report_file is not None:
        sys.stdout.write(f"report          {report_file}\n")
