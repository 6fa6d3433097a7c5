"""Each run as an MLflow run: its spec as params, its figures as metrics, its provenance as tags.

``qhybrid run --track URI`` (or ``MLFLOW_TRACKING_URI``) calls :func:`track_run` once
the report is written. The MLflow run gets

- **params**: the run spec, flattened (``spec.qubits``, ``spec.mode``, ...); a circuit
  given as text is recorded by its fingerprint (params hold at most 6000 characters);
- **metrics**: estimate, standard error, error against the exact value, every timing
  (``time.<step>``), the counts, cache hits, failovers and the cost estimate;
- **tags**: the provenance (spec hash, fingerprints, backends, versions, machine);
- **artifacts**: ``report.json``, ``terms.png`` (drawn now if the run did not draw it) and
  ``problem/circuit.qasm``.

A variational loop is one MLflow run with one step per evaluation
(:class:`VariationalTracker`). Tracking is idempotent: a run directory tracked before
(tag ``qhybrid.run_dir`` and the same spec hash) is not logged twice.

Only the MLflow client is needed (``pip install 'qhybrid[tracking]'``, mlflow-skinny).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from qhybrid.errors import InputError, QhybridError
from qhybrid.pipeline.rundir import RunDir
from qhybrid.pipeline.terms_plot import write_terms_plot

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_EXPERIMENT = "qhybrid"
RUN_DIR_TAG = "qhybrid.run_dir"
SPEC_HASH_TAG = "qhybrid.spec_hash"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
HEALTH_TIMEOUT_S = 10


def _client(uri: str) -> Any:
    """An MlflowClient for ``uri``; one clear line when the package is missing or the server does not answer.

    A tracking server is asked for ``/health`` first, with a short timeout: MLflow's own
    client retries a refused connection with backoff for minutes before it gives up.
    """
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise InputError("--track", "needs the MLflow client: pip install 'qhybrid[tracking]'") from None
    if uri.startswith(("http://", "https://")):
        try:
            answer = httpx.get(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S)
        except httpx.HTTPError as error:
            raise QhybridError(
                f"--track {uri}: no MLflow tracking server answers ({type(error).__name__})"
            ) from None
        if answer.status_code != 200:
            raise QhybridError(f"--track {uri}: the tracking server's /health answered {answer.status_code}")
    return MlflowClient(tracking_uri=uri)


def _quiet_stdout() -> contextlib.AbstractContextManager[Any]:
    # MLflow prints "View run ..." links on stdout when a run ends; stdout may carry --json.
    return contextlib.redirect_stdout(sys.stderr)


def _experiment_id(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # created meanwhile by another run: read it back
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, item in sorted(value.items()):
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, list | tuple) else str(value)


def params_of(report: Mapping[str, Any]) -> dict[str, str]:
    """The run spec, flattened into MLflow params (a circuit's text by its fingerprint)."""
    spec = dict(report["provenance"]["spec"])
    if spec.get("circuit_qasm") is not None:
        spec["circuit_qasm"] = f"fingerprint:{report['provenance']['circuit_fingerprint']}"
    params: dict[str, str] = {}
    _flatten("spec", spec, params)
    return {key: value[:MAX_PARAM_LENGTH] for key, value in params.items()}


def metrics_of(report: Mapping[str, Any]) -> dict[str, float]:
    """The run's figures as MLflow metrics (numbers only; an absent exact value gives no error)."""
    metrics: dict[str, float] = {"estimate": report["estimate"], "standard_error": report["standard_error"]}
    if report.get("error") is not None:
        metrics["error"] = report["error"]
        metrics["abs_error"] = abs(report["error"])
        metrics["exact"] = report["exact"]
    for step, seconds in report["timings"].items():
        metrics[f"time.{step}"] = seconds
    for key in ("subexperiments", "unique", "duplicates"):
        metrics[f"count.{key}"] = report["counts"][key]
    for backend, count in report["counts"].get("by_backend", {}).items():
        metrics[f"count.backend.{backend}"] = count
    cache = report.get("cache") or {}
    hits = cache.get("hits") or {}
    metrics["cache.hits"] = sum(hits.values())
    for kind, count in hits.items():
        metrics[f"cache.hits.{kind}"] = count
    metrics["cache.computed"] = cache.get("computed", 0)
    metrics["failovers"] = len(report["provenance"]["failovers"])
    cost = report["provenance"].get("cost") or {}
    for key, value in (cost.get("usage") or {}).items():
        if isinstance(value, int | float):
            metrics[f"usage.{key}"] = value
    estimate = cost.get("estimate") or {}
    for key in ("cpu", "gpu", "qpu", "total"):
        if key in estimate:
            metrics[f"cost.{key}"] = estimate[key]
    return {key: float(value) for key, value in metrics.items()}


def tags_of(report: Mapping[str, Any], run_dir: Path) -> dict[str, str]:
    """The provenance as MLflow tags: what identifies the run and what it ran on."""
    provenance = report["provenance"]
    tags = {
        RUN_DIR_TAG: str(run_dir.resolve()),
        SPEC_HASH_TAG: provenance["spec_hash"],
        "qhybrid.circuit_fingerprint": provenance["circuit_fingerprint"],
        "qhybrid.observable_fingerprint": provenance["observable_fingerprint"],
        "qhybrid.mode": provenance["mode"],
        "qhybrid.policy": provenance["policy"],
        "qhybrid.seed": str(provenance["seed"]),
        "qhybrid.report_schema": report["schema_version"],
        "qhybrid.backends": json.dumps(provenance["backends"], sort_keys=True),
        "qhybrid.exact_reference": json.dumps(provenance.get("exact_reference"), sort_keys=True),
        "qhybrid.generated_with": json.dumps(provenance["generated_with"], sort_keys=True),
    }
    environment = provenance.get("environment") or {}
    for key, value in environment.items():
        if isinstance(value, Mapping):
            for name, version in value.items():
                tags[f"qhybrid.environment.{key}.{name}"] = str(version)
        else:
            tags[f"qhybrid.environment.{key}"] = str(value)
    return tags


def _log(
    client: Any, run_id: str, metrics: Mapping[str, float], params: Mapping[str, str], step: int = 0
) -> None:
    from mlflow.entities import Metric, Param

    stamp = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, value, stamp, step) for key, value in metrics.items()],
        params=[Param(key, value) for key, value in params.items()],
    )


def _existing(client: Any, experiment_id: str, run_dir: Path, spec_hash: str) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{RUN_DIR_TAG}` = '{run_dir.resolve()}' and tags.`{SPEC_HASH_TAG}` = '{spec_hash}'"
        ),
        max_results=1,
    )
    return str(runs[0].info.run_id) if runs else None


def track_run(
    uri: str, report: Mapping[str, Any], run_dir: Path, *, experiment: str = DEFAULT_EXPERIMENT
) -> str:
    """Log a finished run to the MLflow server at ``uri``; return the MLflow run id.

    A run directory already tracked there (same spec hash) is not logged again: its id is returned.
    """
    client = _client(uri)
    try:
        experiment_id = _experiment_id(client, experiment)
        spec_hash = report["provenance"]["spec_hash"]
        known = _existing(client, experiment_id, run_dir, spec_hash)
        if known is not None:
            return known
        run = client.create_run(experiment_id, run_name=run_dir.name, tags=tags_of(report, run_dir))
        run_id = str(run.info.run_id)
        _log(client, run_id, metrics_of(report), params_of(report))
        files = RunDir(run_dir)
        client.log_artifact(run_id, str(files.report_file))
        if not files.terms_plot_file.is_file():  # a run draws it only when asked; MLflow shows it
            write_terms_plot(files)
        client.log_artifact(run_id, str(files.terms_plot_file))
        client.log_artifact(run_id, str(files.circuit_file), artifact_path="problem")
        with _quiet_stdout():
            client.set_terminated(run_id, "FINISHED")
        return run_id
    except QhybridError:
        raise
    except Exception as error:  # the server's or the client's: say where, without a traceback
        raise QhybridError(
            f"--track {uri}: MLflow refused the run: {type(error).__name__}: {error}"
        ) from None


class VariationalTracker:
    """One MLflow run for a variational loop: its spec as params, one step per evaluation."""

    def __init__(
        self, uri: str, name: str, params: Mapping[str, Any], *, experiment: str = DEFAULT_EXPERIMENT
    ):
        """Start the MLflow run now, so a bad server fails before the first evaluation."""
        self.client = _client(uri)
        self.uri = uri
        try:
            experiment_id = _experiment_id(self.client, experiment)
            run = self.client.create_run(experiment_id, run_name=name, tags={"qhybrid.kind": "variational"})
        except Exception as error:
            raise QhybridError(
                f"--track {uri}: MLflow refused the run: {type(error).__name__}: {error}"
            ) from None
        self.run_id = str(run.info.run_id)
        flat: dict[str, str] = {}
        _flatten("qaoa", dict(params), flat)
        _log(self.client, self.run_id, {}, flat)

    def step(self, entry: Mapping[str, Any]) -> None:
        """Log one evaluation: its energy, standard error, cache use and time, at step = its index."""
        metrics = {
            "energy": entry["energy"],
            "standard_error": entry["standard_error"],
            "cache.served": entry["served"],
            "unique": entry["unique"],
        }
        if entry.get("wall_seconds") is not None:
            metrics["time.total_wall"] = entry["wall_seconds"]
        _log(
            self.client,
            self.run_id,
            {k: float(v) for k, v in metrics.items()},
            {},
            step=int(entry["evaluation"]),
        )

    def finish(self, result: Mapping[str, Any], out: Path) -> None:
        """Log the best energy and the trace, and close the run."""
        best = result["best"]
        metrics = {"best_energy": best["energy"], "evaluations": result["evaluations"]}
        metrics["fraction_avoided"] = result["subexperiments"]["fraction_avoided"]
        if "optimum" in result:
            metrics["approximation_ratio"] = result["optimum"]["approximation_ratio"]
        _log(self.client, self.run_id, {k: float(v) for k, v in metrics.items()}, {})
        for name in ("qaoa.json", "qaoa.png"):
            if (out / name).is_file():
                self.client.log_artifact(self.run_id, str(out / name))
        with _quiet_stdout():
            self.client.set_terminated(self.run_id, "FINISHED")
