"""The run directory: where each step reads its inputs and writes its outputs.

Layout (every file written atomically; a file that exists is complete)::

    run.json                    the RunSpec and its hash (written first)
    problem/circuit.qasm        the full circuit as OpenQASM 3, for people
    subexperiments/shard-*.qpy  unique subexperiments, SHARD_SIZE per file, plan order
    manifest.json               the plan and problem facts (written last by generate)
    results/range-A-B.npz       outcome distributions of unique subexperiments [A, B)
    results/range-A-B-X.npz     the same, for only those of [A, B) planned on backend X (a branch's batch)
    reconstruction.json         estimate, standard error, exact value, per-term values
    report.json, summary.txt, terms.png
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qhybrid.atomic import read_json
from qhybrid.errors import RunDirError
from qhybrid.problem import RunSpec

SHARD_SIZE = 16
_RANGE_FILE = re.compile(r"^range-(\d{6})-(\d{6})(?:-([a-z]+))?\.npz$")


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def spec_file(self) -> Path:
        """Return the path of run.json."""
        return self.root / "run.json"

    @property
    def manifest_file(self) -> Path:
        """Return the path of manifest.json (present once generate finished)."""
        return self.root / "manifest.json"

    @property
    def results_dir(self) -> Path:
        """Return the directory of result files."""
        return self.root / "results"

    @property
    def reconstruction_file(self) -> Path:
        """Return the path of reconstruction.json."""
        return self.root / "reconstruction.json"

    def shard_file(self, shard: int) -> Path:
        """Return the QPY file holding unique subexperiments [shard*SHARD_SIZE, ...)."""
        return self.root / "subexperiments" / f"shard-{shard:05d}.qpy"

    def result_file(self, start: int, stop: int, backend: str | None = None) -> Path:
        """Return the result file of unique subexperiments [start, stop), or of those of one backend."""
        suffix = "" if backend is None else f"-{backend}"
        return self.results_dir / f"range-{start:06d}-{stop:06d}{suffix}.npz"

    def result_files(self) -> list[tuple[int, int, str | None]]:
        """Return (start, stop, backend or None) of every result file present, sorted."""
        if not self.results_dir.is_dir():
            return []
        found = []
        for path in self.results_dir.iterdir():
            match = _RANGE_FILE.match(path.name)
            if match:
                found.append((int(match.group(1)), int(match.group(2)), match.group(3)))
        return sorted(found, key=lambda item: (item[0], item[1], item[2] or ""))

    def result_ranges(self) -> list[tuple[int, int]]:
        """Return the (start, stop) of every whole-range result file present, sorted."""
        return [(start, stop) for start, stop, backend in self.result_files() if backend is None]

    def done_ranges(self, backends: Sequence[str]) -> list[tuple[int, int]]:
        """Return the unique ids that have a result as sorted runs [start, stop).

        ``backends`` is the backend of every unique subexperiment in plan order: a
        branch file ``range-A-B-X.npz`` covers only the ids of [A, B) planned on X.
        """
        total = len(backends)
        covered = bytearray(total)
        for start, stop, backend in self.result_files():
            for uid in range(start, min(stop, total)):
                if backend is None or backends[uid] == backend:
                    covered[uid] = 1
        runs = []
        uid = 0
        while uid < total:
            if not covered[uid]:
                uid += 1
                continue
            start = uid
            while uid < total and covered[uid]:
                uid += 1
            runs.append((start, uid))
        return runs

    def read_spec(self) -> RunSpec:
        """Read run.json, failing clearly when the directory holds no run."""
        if not self.spec_file.is_file():
            raise RunDirError(f"{self.root}: holds no qhybrid run (no run.json)")
        return RunSpec.from_json(read_json(self.spec_file)["spec"])

    def manifest_stamp(self) -> tuple[int, int, int]:
        """Return (inode, size, mtime) of manifest.json, failing clearly when generate has not finished.

        The manifest is only ever replaced by an atomic rename, so the stamp
        identifies its content without parsing it.
        """
        try:
            stat = self.manifest_file.stat()
        except FileNotFoundError:
            raise RunDirError(f"{self.root}: generate has not finished (no manifest.json)") from None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def read_manifest(self) -> dict:
        """Read manifest.json, failing clearly when generate has not finished."""
        self.manifest_stamp()
        return read_json(self.manifest_file)


def pending_ranges(done: list[tuple[int, int]], total: int, batch_size: int) -> list[tuple[int, int]]:
    """Split the unique ids not covered by ``done`` into ranges of at most ``batch_size``."""
    covered = bytearray(total)
    for start, stop in done:
        covered[start : min(stop, total)] = b"\x01" * (min(stop, total) - start)
    ranges = []
    position = 0
    while position < total:
        if covered[position]:
            position += 1
            continue
        start = position
        while position < total and not covered[position] and position - start < batch_size:
            position += 1
        ranges.append((start, position))
    return ranges
