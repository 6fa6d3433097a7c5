"""The run directory: where each step reads its inputs and writes its outputs.

This module is the only owner of the directory's file names and of the result
file format (flat NumPy arrays in an ``.npz``, no pickle); every other module asks
:class:`RunDir` for a path. Layout (every file written atomically; a file that
exists is complete)::

    run.json                    the RunSpec and its hash (written first)
    problem/circuit.qasm        the full circuit as OpenQASM 3, for people
    subexperiments/shard-*.qpy  unique subexperiments, SHARD_SIZE per file, plan order
    manifest.json               the plan and problem facts (written last by generate)
    results/range-A-B.npz       outcome distributions of unique subexperiments [A, B)
    results/range-A-B-X.npz     the same, for only those of [A, B) planned on backend X (a branch's batch)
    reconstruction.json         estimate, standard error, per-term values
    exact.json                  the exact reference value and terms (when the circuit is narrow enough)
    report.json, summary.txt    the report; terms.png beside them when drawn (--plot, runs plot)
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from qiskit import QuantumCircuit, qpy

from qhybrid import atomic
from qhybrid.cutting.outcomes import OutcomeDistribution
from qhybrid.cutting.plan import CuttingPlan
from qhybrid.errors import RunDirError
from qhybrid.spec import RunSpec

SHARD_SIZE = 16
# File and folder names, relative to the run directory. The workflow's S3 artifacts
# name the same paths, so pods and the local runner agree on one layout.
SPEC_FILE = "run.json"
MANIFEST_FILE = "manifest.json"
CIRCUIT_FILE = "problem/circuit.qasm"
SHARDS_DIR = "subexperiments"
RESULTS_DIR = "results"
RECONSTRUCTION_FILE = "reconstruction.json"
EXACT_FILE = "exact.json"
REPORT_FILE = "report.json"
SUMMARY_FILE = "summary.txt"
TERMS_PLOT_FILE = "terms.png"
_RANGE_FILE = re.compile(r"^range-(\d{6})-(\d{6})(?:-([a-z]+))?\.npz$")


class InRunDir:
    """A fixed file or folder of every run directory: ``RunDir(root).report_file`` is root/report.json."""

    def __init__(self, relative: str) -> None:
        """Name the path relative to the run directory."""
        self.relative = relative

    def __get__(self, run_dir: RunDir, owner: type | None = None) -> Path:
        """Return the path inside ``run_dir``."""
        return run_dir.root / self.relative


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    spec_file = InRunDir(SPEC_FILE)
    manifest_file = InRunDir(MANIFEST_FILE)  # present once generate finished
    circuit_file = InRunDir(CIRCUIT_FILE)  # the full circuit as OpenQASM 3, written by generate
    results_dir = InRunDir(RESULTS_DIR)
    reconstruction_file = InRunDir(RECONSTRUCTION_FILE)
    exact_file = InRunDir(EXACT_FILE)
    report_file = InRunDir(REPORT_FILE)
    summary_file = InRunDir(SUMMARY_FILE)
    terms_plot_file = InRunDir(TERMS_PLOT_FILE)

    def shard_file(self, shard: int) -> Path:
        """Return the QPY file holding unique subexperiments [shard*SHARD_SIZE, ...)."""
        return self.root / SHARDS_DIR / f"shard-{shard:05d}.qpy"

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

    def done_ids(self, backends: Sequence[str]) -> set[int]:
        """Return the unique ids that have a result.

        ``backends`` is the backend of every unique subexperiment in plan order: a
        branch file ``range-A-B-X.npz`` covers only the ids of [A, B) planned on X.
        """
        total = len(backends)
        return {
            uid
            for start, stop, backend in self.result_files()
            for uid in range(start, min(stop, total))
            if backend is None or backends[uid] == backend
        }

    def done_ranges(self, backends: Sequence[str]) -> list[tuple[int, int]]:
        """Return the unique ids that have a result as sorted runs [start, stop) (see :meth:`done_ids`)."""
        return contiguous_runs(sorted(self.done_ids(backends)))

    def read_spec(self) -> RunSpec:
        """Read run.json, failing clearly when the directory holds no run."""
        if not self.spec_file.is_file():
            raise RunDirError(f"{self.root}: holds no qhybrid run (no run.json)")
        return RunSpec.from_json(atomic.read_json(self.spec_file)["spec"])

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

    def read_manifest(self) -> dict[str, Any]:
        """Read manifest.json, failing clearly when generate has not finished."""
        self.manifest_stamp()
        return dict(atomic.read_json(self.manifest_file))

    def generated(self) -> GeneratedRun:
        """Return the run's spec, manifest and parsed plan, parsed once per process.

        Every later step (execute, reconstruct, report) starts here, so a process that
        runs many batches, or all steps, reads and parses the manifest once; it is read
        again only when generate replaced it.
        """
        key = self.root.resolve()
        stamp = self.manifest_stamp()
        cached = _generated.get(key)
        if cached is None or cached.stamp != stamp:
            manifest = self.read_manifest()
            cached = _generated[key] = GeneratedRun(
                run_dir=self,
                stamp=stamp,
                spec=self.read_spec(),
                manifest=manifest,
                plan=CuttingPlan.from_json(manifest["plan"]),
            )
        return cached

    def write_results(
        self,
        start: int,
        stop: int,
        backend: str | None,
        distributions: Sequence[OutcomeDistribution],
        meta: dict[str, Any],
    ) -> None:
        """Write the result file of [start, stop) (of one backend's ids, with ``backend``)."""
        path = self.result_file(start, stop, backend)
        write_result_file(path, distributions, meta)
        if _HELD:  # inside holding_results(): keep what was written, as reading it back would give it
            _HELD[-1][path] = (
                _file_stamp(path),
                list(distributions),
                json.loads(json.dumps(meta, sort_keys=True)),
            )

    def read_results(
        self, start: int, stop: int, backend: str | None
    ) -> tuple[list[OutcomeDistribution], dict[str, Any]]:
        """Read the result file of [start, stop) (of one backend's ids, with ``backend``)."""
        path = self.result_file(start, stop, backend)
        held = _HELD[-1].get(path) if _HELD else None
        if held is not None and held[0] == _file_stamp(path):
            return list(held[1]), held[2]
        return read_result_file(path)


def write_result_file(path: Path, distributions: Sequence[OutcomeDistribution], meta: dict[str, Any]) -> None:
    """Write distributions as flat NumPy arrays plus JSON metadata, atomically.

    A distribution with more than half of its outcomes present (an exact one, usually) is
    written dense, its weights only, zeros included: half the bytes of outcomes and weights.
    Reading it back keeps its nonzero entries, the same outcomes and weights bit for bit.
    """
    dense = [_worth_dense(d) for d in distributions]
    weights = [d.to_dense() if whole else d.weights for d, whole in zip(distributions, dense, strict=True)]
    outcomes = [d.outcomes for d, whole in zip(distributions, dense, strict=True) if not whole]
    sparse_lengths = [0 if whole else len(d.outcomes) for d, whole in zip(distributions, dense, strict=True)]
    atomic.write_npz(
        path,
        {
            "outcomes": np.concatenate([np.empty(0, np.uint64), *outcomes]).astype(np.uint64),
            "outcome_offsets": np.cumsum([0, *sparse_lengths]).astype(np.int64),
            "weights": np.concatenate([np.empty(0), *weights]).astype(np.float64),
            "offsets": np.cumsum([0] + [len(w) for w in weights]).astype(np.int64),
            "dense": np.asarray(dense, dtype=np.bool_),
            "num_observable_bits": np.asarray([d.num_observable_bits for d in distributions], dtype=np.int64),
            "shots": np.asarray([-1 if d.shots is None else d.shots for d in distributions], dtype=np.int64),
            "meta": np.asarray(json.dumps(meta, sort_keys=True)),
        },
    )


# Result files written inside holding_results(), by path: (file stamp, distributions, metadata).
_HELD: list[dict[Path, tuple[tuple[int, int, int], list[OutcomeDistribution], dict[str, Any]]]] = []


@contextmanager
def holding_results() -> Iterator[None]:
    """Within: a result file this process writes is read back from memory while it is unchanged.

    The local runner executes and reconstructs in one process: the files are still written
    (resume, workers, drift read them), but not read back. A file replaced meanwhile (its
    inode, size or time differ) is read from disk.
    """
    _HELD.append({})
    try:
        yield
    finally:
        _HELD.pop()


def _file_stamp(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _worth_dense(distribution: OutcomeDistribution) -> bool:
    """More than half of its outcomes present, and none of zero weight (which dense form would drop)."""
    present = len(distribution.outcomes)
    return 2 * present > (2 << distribution.num_observable_bits) and bool(np.all(distribution.weights != 0))


def read_result_file(path: Path) -> tuple[list[OutcomeDistribution], dict[str, Any]]:
    """Read a file written by :func:`write_result_file` (or before dense entries): distributions, metadata."""
    arrays = atomic.read_npz(path)
    offsets = arrays["offsets"]
    count = len(offsets) - 1
    dense = arrays["dense"] if "dense" in arrays else np.zeros(count, dtype=np.bool_)
    outcome_offsets = arrays["outcome_offsets"] if "outcome_offsets" in arrays else offsets
    distributions = []
    for i in range(count):
        shots = int(arrays["shots"][i])
        weights = arrays["weights"][offsets[i] : offsets[i + 1]]
        num_bits = int(arrays["num_observable_bits"][i])
        if dense[i]:
            distributions.append(
                OutcomeDistribution.from_dense(weights, num_bits, None if shots < 0 else shots)
            )
            continue
        outcomes = arrays["outcomes"][outcome_offsets[i] : outcome_offsets[i + 1]]
        distributions.append(OutcomeDistribution(outcomes, weights, num_bits, None if shots < 0 else shots))
    return distributions, json.loads(str(arrays["meta"]))


@dataclass(frozen=True)
class GeneratedRun:
    """What generate decided, as later steps need it: the spec, the manifest, the plan, the circuits."""

    run_dir: RunDir
    stamp: tuple[int, int, int]
    spec: RunSpec
    manifest: dict[str, Any]
    plan: CuttingPlan
    # Loaded (or, in the process that generated them, just written) QPY shards by number.
    shards: dict[int, list[QuantumCircuit]] = field(default_factory=dict, compare=False, repr=False)
    # The circuits generate made in this process (one sequence, each built when first read).
    held: list[Sequence[QuantumCircuit]] = field(default_factory=list, compare=False, repr=False)

    def hold_circuits(self, circuits: Sequence[QuantumCircuit]) -> None:
        """Keep the circuits generate just made, so an in-process execute need not read them back.

        ``circuits`` may build each circuit when it is first read (a run without shards):
        they are kept as they are, not read here.
        """
        self.held[:] = [circuits]

    def holds_all_circuits(self) -> bool:
        """Whether this process holds every unique subexperiment's circuit (generate just made them)."""
        return bool(self.held) and len(self.held[0]) == len(self.plan.unique)

    def circuits_for(self, ids: Sequence[int]) -> list[QuantumCircuit]:
        """Return the circuits of unique subexperiments ``ids``, reading (and checking) their shards."""
        if self.holds_all_circuits():
            return [self.held[0][uid] for uid in ids]
        out = []
        for uid in ids:
            shard = uid // SHARD_SIZE
            if shard not in self.shards:
                if not self.manifest.get("shards_written", True):
                    raise RunDirError(
                        f"{self.run_dir.root}: was generated without QPY shards (--no-shards), "
                        "so only the local runner can execute it: --resume it"
                    )
                path = self.run_dir.shard_file(shard)
                if not path.is_file():
                    raise RunDirError(f"{path}: missing; rerun generate")
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() != self.manifest["shard_sha256"][shard]:
                    raise RunDirError(f"{path}: content does not match the manifest; rerun generate")
                self.shards[shard] = list(qpy.load(io.BytesIO(data)))
            out.append(self.shards[shard][uid % SHARD_SIZE])
        return out


def contiguous_runs(ids: Sequence[int]) -> list[tuple[int, int]]:
    """Group sorted ids into maximal runs [start, stop)."""
    runs: list[tuple[int, int]] = []
    for uid in ids:
        if runs and runs[-1][1] == uid:
            runs[-1] = (runs[-1][0], uid + 1)
        else:
            runs.append((uid, uid + 1))
    return runs


def write_shards(run_dir: RunDir, circuits: Sequence[QuantumCircuit]) -> list[str]:
    """Write unique subexperiments as QPY shards of SHARD_SIZE, in plan order; return their SHA-256s."""
    hashes = []
    for start in range(0, len(circuits), SHARD_SIZE):
        buffer = io.BytesIO()
        qpy.dump(list(circuits[start : start + SHARD_SIZE]), buffer)
        atomic.write_bytes(run_dir.shard_file(start // SHARD_SIZE), buffer.getvalue())
        hashes.append(hashlib.sha256(buffer.getvalue()).hexdigest())
    return hashes


_generated: dict[Path, GeneratedRun] = {}


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
