"""A small client for the Kubernetes API: JSON in, JSON out, errors as one line.

Preflight and the ``apiserver`` test tier talk to any API server through it: the
kubernetes package's ApiClient does the transport and authentication (kubeconfig:
tokens, client certificates, CA), this class only names the calls they need.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qhybrid.errors import QhybridError

FIELD_MANAGER = "qhybrid-preflight"


class ApiFailure(QhybridError):
    """The API server refused a call; ``status`` is the HTTP status, ``reason`` the Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        """Record the refusal."""
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class KubeApi:
    """Generic GET, POST and server-side apply over one API server."""

    def __init__(self, api_client: Any) -> None:
        """Wrap a ``kubernetes.client.ApiClient``."""
        self.api_client = api_client
        self._discovered: dict[str, dict[str, dict[str, Any]] | None] = {}

    def resources(self, api_version: str) -> dict[str, dict[str, Any]] | None:
        """Return kind -> discovery entry (``name`` is the plural) of a group version; None if not served.

        Asked once per group version and connection: every check and test shares the answer.
        """
        if api_version not in self._discovered:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            try:
                listing: dict[str, Any] | None = self.get(path)
            except ApiFailure as failure:
                if failure.status != 404:
                    raise
                listing = None
            self._discovered[api_version] = (
                None
                if listing is None
                else {r["kind"]: r for r in listing.get("resources") or [] if "/" not in r["name"]}
            )
        return self._discovered[api_version]

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path | None = None, context: str | None = None) -> KubeApi:
        """Connect with a kubeconfig (default: $KUBECONFIG or ~/.kube/config), failing in one line."""
        from kubernetes import config

        try:
            client = config.new_client_from_config(
                config_file=None if kubeconfig is None else str(kubeconfig), context=context
            )
        except (config.ConfigException, OSError, TypeError) as error:
            raise QhybridError(f"--kubeconfig: cannot use it: {' '.join(str(error).split())}") from None
        return cls(client)

    @classmethod
    def in_cluster_or_kubeconfig(cls, kubeconfig: Path | None = None) -> KubeApi:
        """Connect with the pod's service account when in a cluster, else with a kubeconfig."""
        import os

        from kubernetes import client, config

        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # re-reads the rotated token
            return cls(client.ApiClient(configuration))
        return cls.from_kubeconfig(kubeconfig)

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            response = self.api_client.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=30,
            )
        except ApiException as error:
            raise _failure(error.status or 0, error.body) from None
        except HTTPError as error:
            raise QhybridError(f"cannot reach the API server: {' '.join(str(error).split())}") from None
        data = response[0].data if isinstance(response, tuple) else response.data
        return dict(json.loads(data or b"{}"))

    def get(self, path: str, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET ``path`` (e.g. ``/version``, ``/api/v1/nodes``)."""
        return self._call("GET", path, query=query)

    def create(self, path: str, body: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """POST ``body`` to the collection at ``path``; ``dry_run`` asks the server to only validate it."""
        query = {"dryRun": "All", "fieldValidation": "Strict"} if dry_run else {"fieldValidation": "Strict"}
        return self._call("POST", path, body=dict(body), query=query)

    def apply(self, path: str, body: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        """Server-side apply ``body`` at the object path ``path``, with strict field validation."""
        query = {"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": "Strict"}
        if dry_run:
            query["dryRun"] = "All"
        return self._call(
            "PATCH", path, body=dict(body), query=query, content_type="application/apply-patch+yaml"
        )

    def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge-patch the object at ``path`` (e.g. a custom object's ``/status``)."""
        return self._call(
            "PATCH", path, body=dict(body), query={"fieldValidation": "Strict"},
            content_type="application/merge-patch+json",
        )  # fmt: skip

    def delete(self, path: str) -> None:
        """DELETE the object at ``path`` (a missing one is fine)."""
        try:
            self._call("DELETE", path)
        except ApiFailure as failure:
            if failure.status != 404:
                raise


def _failure(status: int, body: Any) -> ApiFailure:
    try:
        data = json.loads(body or "{}")
    except (TypeError, ValueError):
        data = {}
    reason = str(data.get("reason") or "Failure")
    message = " ".join(str(data.get("message") or body or "").split())
    return ApiFailure(status, reason, message)


def resource_path(api_version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
    """Return the REST path of a collection (``name`` None) or one object."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return base if name is None else f"{base}/{name}"
