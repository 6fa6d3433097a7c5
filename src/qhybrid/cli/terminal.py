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

from qhybrid.errors import QhybridError, RunFailed

# The exit codes the README documents. A script can tell "fix your input" (2) from
# "the run broke, resume it" (1) from "the run finished, but not where it was meant to" (3).
EXIT_RUN_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_FAILED_OVER = 3


def fail(message: str, code: int = EXIT_USER_ERROR) -> typer.Exit:
    """Print ``qhybrid: error: MESSAGE`` (on one line) and return the Exit (code 2 unless told) to raise."""
    sys.stderr.write(f"qhybrid: error: {' '.join(message.split())}\n")
    return typer.Exit(code)


def warn(message: str) -> None:
    """Print ``qhybrid: warning: MESSAGE`` on one line."""
    sys.stderr.write(f"qhybrid: warning: {' '.join(message.split())}\n")


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a QhybridError into one unwrapped line on stderr: exit 1 for a failed run, else 2."""
    try:
        yield
    except RunFailed as error:
        raise fail(str(error), EXIT_RUN_FAILED) from None
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
