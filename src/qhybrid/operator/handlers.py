"""The QuantumJob operator: kopf handlers that call :class:`qhybrid.operator.kube.Reconciler`.

Every handler runs the same reconcile of one job, so they differ only in what wakes it:
- a QuantumJob created, resumed (operator restart) or its spec changed;
- an event on a Workflow the operator created (label ``qhybrid.io/quantumjob-uid``);
- a timer while the job is not final, which also retries whatever an event missed.

An API failure in a job handler is retried with exponential backoff (kopf's
TemporaryError); the Workflow handler only logs it, since the timer follows up.

Least privilege: the operator watches one namespace (the stack's workflow namespace),
runs standalone (one replica, no peering objects) and with cluster scanning off, so
it needs no ClusterRole at all: kopf then trusts the namespace it is given instead of
listing namespaces and CRDs. Kopf keeps its handler progress in annotations under
``qhybrid.io`` (the status is the operator's own, and its schema has no room for kopf's).
No finalizer is added: deleting a job deletes its Workflow through the ownerReference.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.quantumjob_crd import GROUP, PLURAL, VERSION
from qhybrid.operator.kube import WORKFLOWS, JobApi, OperatorMetrics, Reconciler
from qhybrid.operator.reconcile import FINAL_PHASES, JOB_NAME_ANNOTATION, JOB_UID_LABEL
from qhybrid.ops.kubeapi import KubeApi

LOG = logging.getLogger("qhybrid.operator")
TIMER_S = 30.0
MAX_BACKOFF_S = 300.0
ANNOTATION_PREFIX = "qhybrid.io"


def backoff_s(retry: int) -> float:
    """Seconds before retry number ``retry`` (0-based): 1, 2, 4 ... up to MAX_BACKOFF_S."""
    return float(min(MAX_BACKOFF_S, 2.0 ** min(retry, 16)))


def settings() -> kopf.OperatorSettings:
    """Return kopf's settings for a namespaced, standalone operator with no cluster-wide access."""
    result = kopf.OperatorSettings()
    result.scanning.disabled = True
    result.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    result.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-spec"
    )
    result.posting.level = logging.WARNING  # Kubernetes events only for what needs a person
    result.watching.server_timeout = 300
    result.watching.client_timeout = 330
    result.execution.max_workers = 4
    return result


def connection_info(configuration: Any) -> kopf.ConnectionInfo:
    """Return kopf's credentials from a ``kubernetes.client.Configuration``, as kopf's client login does."""
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def not_final(status: Any, **_: Any) -> bool:
    """A job the timer still follows: not Succeeded or Failed."""
    return (status or {}).get("phase") not in FINAL_PHASES


def build_registry(reconciler: Reconciler) -> kopf.OperatorRegistry:
    """Return the handlers of one operator, bound to ``reconciler``."""
    registry = kopf.OperatorRegistry()
    job = (GROUP, VERSION, PLURAL)

    def retrying(namespace: str | None, name: str, retry: int) -> None:
        assert namespace is not None  # QuantumJob is namespaced
        try:
            reconciler.reconcile(namespace, name)
        except Exception as error:
            delay = backoff_s(retry)
            LOG.warning("reconcile of %s/%s failed (retry in %.0f s): %s", namespace, name, delay, error)
            raise kopf.TemporaryError(str(error), delay=delay) from error

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # The same credentials as the reconciler's own calls (in-cluster, or --kubeconfig).
        return connection_info(reconciler.api.kube.api_client.configuration)

    @kopf.on.resume(*job, registry=registry)
    @kopf.on.create(*job, registry=registry)
    @kopf.on.update(*job, field="spec", registry=registry)
    def on_job(*, namespace: str | None, name: str, retry: int, **_: Any) -> None:
        retrying(namespace, name, retry)

    @kopf.timer(*job, interval=TIMER_S, initial_delay=TIMER_S, when=not_final, registry=registry)
    def on_timer(*, namespace: str | None, name: str, **kwargs: Any) -> None:
        retrying(namespace, name, int(kwargs.get("retry") or 0))

    @kopf.on.delete(*job, optional=True, registry=registry)
    def on_delete(*, namespace: str | None, name: str, **_: Any) -> None:
        reconciler.forget(namespace or "", name)

    group, version = WORKFLOWS[0].split("/")

    @kopf.on.event(
        group=group,
        version=version,
        plural=WORKFLOWS[1],
        labels={JOB_UID_LABEL: kopf.PRESENT},
        registry=registry,
    )
    def on_workflow(*, namespace: str | None, annotations: Mapping[str, str], **_: Any) -> None:
        name = annotations.get(JOB_NAME_ANNOTATION)
        if not name or namespace is None:
            return
        try:
            reconciler.reconcile(namespace, name)
        except Exception as error:  # the job's timer retries; an event handler is not retried
            LOG.warning("reconcile of %s/%s after a Workflow event failed: %s", namespace, name, error)

    return registry


def run_operator(
    config: StackConfig,
    *,
    namespace: str | None = None,
    metrics_port: int = 9090,
    liveness_port: int = 8080,
    kube: Callable[[], KubeApi] = KubeApi.in_cluster_or_kubeconfig,
) -> None:
    """Run the operator until SIGTERM: metrics on ``metrics_port``, /healthz on ``liveness_port``."""
    from prometheus_client import start_http_server

    metrics = OperatorMetrics()
    reconciler = Reconciler(JobApi(kube()), config, metrics)
    start_http_server(metrics_port, registry=metrics.registry)
    kopf.run(
        registry=build_registry(reconciler),
        settings=settings(),
        standalone=True,
        namespaces=[namespace or config.workflow_namespace],
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz",
    )
