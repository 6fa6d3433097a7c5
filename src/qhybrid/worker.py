"""A worker process for the local runner: executes ranges it reads from stdin.

Protocol, one JSON object per line each way: the runner sends
``{"start": A, "stop": B}``; the worker answers with the execute step's timings
or ``{"error": "..."}``. Only plain JSON crosses the process boundary; circuits
and results travel as files in the run directory. Start it with
``python -m qhybrid.worker RUN_DIR``; it exits when stdin closes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from qhybrid.errors import QhybridError
from qhybrid.rundir import RunDir
from qhybrid.steps import execute


def serve(run_dir: RunDir) -> None:
    """Execute each requested range until stdin closes."""
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            reply = execute(run_dir, int(request["start"]), int(request["stop"]))
        except QhybridError as error:
            reply = {"error": str(error)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve(RunDir(Path(sys.argv[1])))
