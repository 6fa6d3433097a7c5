"""The ``apiserver`` tier: tests against whatever API server ``QHYBRID_TEST_KUBECONFIG`` names.

A bare kube-apiserver with etcd is enough (start it with ``--authorization-mode=RBAC``
and a service-account issuer, as every real cluster has): nothing here needs a
kubelet, a controller or a scheduler, and nothing needs to become Ready. kind works
too; the nightly workflow runs this tier against its kind cluster.

- ``kube``: a KubeApi on that server; unset, every test here skips, saying so.
- ``crds``: the CRDs of ``QHYBRID_CRDS_DIR`` (default ``../shared/crds``) that the
  server lacks are installed once, and each is waited for until Established.
- ``scratch``: a per-test prefix; whatever the test creates is named with it and
  deleted afterwards (namespaces last).
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from qhybrid.blueprint.validate.schemas import crd_documents
from qhybrid.ops.kubeapi import ApiFailure, KubeApi, resource_path
from tests.conftest import REPO

KUBECONFIG_ENV = "QHYBRID_TEST_KUBECONFIG"
CRDS_DIR = Path(os.environ.get("QHYBRID_CRDS_DIR") or REPO.parent / "shared" / "crds")
ESTABLISHED_TIMEOUT_S = 60.0
CRD_API = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    for item in items:
        if "tests/apiserver/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.apiserver)


@pytest.fixture(scope="session")
def kube() -> KubeApi:
    path = os.environ.get(KUBECONFIG_ENV)
    if not path:
        pytest.skip(f"{KUBECONFIG_ENV} is not set: no API server to test against")
    return KubeApi.from_kubeconfig(Path(path))


@pytest.fixture(scope="session")
def crds(kube: KubeApi) -> list[str]:
    """Install the CRDs the server lacks (from QHYBRID_CRDS_DIR), wait until each is Established."""
    present = {c["metadata"]["name"] for c in kube.get(CRD_API).get("items") or []}
    documents = crd_documents(CRDS_DIR) if CRDS_DIR.is_dir() else []
    installed = []
    for crd in documents:
        name = crd["metadata"]["name"]
        if name not in present:
            kube.create(CRD_API, crd)
            installed.append(name)
    for name in installed:
        wait_established(kube, name)
    return sorted(present | set(installed))


def wait_established(kube: KubeApi, name: str) -> None:
    """Wait until the CRD ``name`` is Established (its resources are served)."""
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    while True:
        conditions = (kube.get(f"{CRD_API}/{name}").get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"CRD {name} not Established in {ESTABLISHED_TIMEOUT_S:.0f} s")
        time.sleep(0.5)


class Scratch:
    """Names for one test's objects, and their deletion afterwards."""

    def __init__(self, kube: KubeApi) -> None:
        self.kube = kube
        self.prefix = "t" + uuid.uuid4().hex[:6]
        self.created: list[str] = []  # object paths, in creation order

    def name(self, name: str) -> str:
        return f"{self.prefix}-{name}"[:63].rstrip("-")

    def create(self, obj: dict[str, Any], plural: str, namespaced: bool) -> dict[str, Any]:
        namespace = obj["metadata"].get("namespace") if namespaced else None
        collection = resource_path(obj["apiVersion"], plural, namespace)
        created = self.kube.create(collection, obj)
        self.created.append(resource_path(obj["apiVersion"], plural, namespace, obj["metadata"]["name"]))
        return created

    def cleanup(self) -> None:
        # Namespaced objects go with their namespace, so cluster-scoped objects are deleted,
        # then the namespaces. A bare API server runs no namespace controller: there a
        # namespace stays Terminating, which is all a test needs.
        def is_namespace(path: str) -> bool:
            return path.startswith("/api/v1/namespaces/") and path.count("/") == 4

        cluster_scoped = [p for p in self.created if "/namespaces/" not in p]
        for path in cluster_scoped + [p for p in self.created if is_namespace(p)]:
            try:
                self.kube.delete(path)
            except ApiFailure:
                pass


@pytest.fixture
def scratch(kube: KubeApi) -> Iterator[Scratch]:
    box = Scratch(kube)
    yield box
    box.cleanup()


def kubeconfig_cluster(folder: Path) -> tuple[str, Path | None]:
    """Return the test server's URL and its CA (a file, written to ``folder`` if inline)."""
    document = yaml.safe_load(Path(os.environ[KUBECONFIG_ENV]).read_text())
    current = document.get("current-context")
    context = next(c["context"] for c in document["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in document["clusters"] if c["name"] == context["cluster"])
    if "certificate-authority-data" in cluster:
        path = folder / "ca.crt"
        path.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        return cluster["server"], path
    ca = cluster.get("certificate-authority")
    return cluster["server"], None if ca is None else Path(ca)


def token_for(kube: KubeApi, namespace: str, account: str, audiences: list[str] | None) -> str:
    request: dict[str, Any] = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600},
    }
    if audiences:
        request["spec"]["audiences"] = audiences
    answer = kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token", request)
    return str(answer["status"]["token"])
