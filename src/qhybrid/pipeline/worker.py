"""A worker process for the local runner: executes ranges it reads from stdin.

Protocol, one JSON object per line each way: the runner sends
``{"start": A, "stop": B, "gateway": {...}, "cache": {...}}`` (the gateway settings as
JSON, which name the token file, never the token, and the cache settings); the worker
answers with the execute step's timings
or ``{"error": "...", "run_failed": bool}`` (a failed run, or bad input), after any number
of progress lines ``{"event": ...}`` from the backends. Only plain JSON crosses the process boundary; circuits
and results travel as files in the run directory. Start it with
``python -m qhybrid.pipeline.worker RUN_DIR``; it exits when stdin closes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from qhybrid.backends import GatewaySettings
from qhybrid.cache.session import CacheSettings
from qhybrid.errors import QhybridError, RunFailed
from qhybrid.pipeline.execute import execute
from qhybrid.pipeline.gc_pacing import fewer_collections
from qhybrid.pipeline.rundir import RunDir


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(run_dir: RunDir) -> None:
    """Execute each requested range until stdin closes."""
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        reply: dict[str, Any]
        try:
            gateway = GatewaySettings.from_json(request.get("gateway") or {})
            cache = CacheSettings.from_json(request.get("cache") or {})
            reply = execute(
                run_dir,
                int(request["start"]),
                int(request["stop"]),
                gateway=gateway,
                events=_send,
                cache=cache,
            )
        except QhybridError as error:
            reply = {"error": str(error), "run_failed": isinstance(error, RunFailed)}
        _send(reply)


if __name__ == "__main__":
    with fewer_collections():
        serve(RunDir(Path(sys.argv[1])))
