"""The kind stack, brought up for real through the Pulumi Automation API and always destroyed.

``kind_stack`` (session scope) creates stack ``kind`` on the project at the
repository root (``stacks/Pulumi.kind.yaml``), sets the secrets, runs ``up``,
and on teardown dumps the cluster's state, destroys the stack and removes it.
Later suites (scenario workflows, load, chaos) take the same fixture and run
inside the same ``up``/``destroy``.

Images: the Pulumi program creates the kind cluster itself, so images can only
be loaded once it exists, while ``up`` is still installing the platform. A
loader thread waits for the cluster, then for the nodes of each pool, and runs
``kind load docker-image`` for each image onto the pools that run it (the GPU
image, the largest, goes to the gpu pool only). A pod created before its image
arrives sits in ImagePullBackOff and the kubelet retries, finding the image
(``IfNotPresent``) once it is on the node.

Opt-in: ``cluster`` tests run only when ``-m`` names ``cluster`` (``pytest -m
cluster tests/integration``); a plain ``pytest`` deselects them, as it does
``slow``. Without docker, kind or the pulumi CLI they skip with one line,
unless ``QHYBRID_REQUIRE_CLUSTER=1`` (the nightly) makes that a failure.

Environment: ``PULUMI_BACKEND_URL`` (default: a throw-away local backend, so a
developer's own stacks are never touched), ``PULUMI_CONFIG_PASSPHRASE``
(default: generated), ``QHYBRID_GRAFANA_ADMIN_PASSWORD`` (default: generated),
``QHYBRID_QPU_PROVIDER_TOKEN`` (optional), ``QHYBRID_CLUSTER_LOG_DIR`` (where
the Pulumi logs and the cluster dump go; default: a pytest temporary folder).
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from qhybrid.blueprint.config import StackConfig, load_stack_file
from qhybrid.blueprint.pools import POOL_LABEL, RESOURCE_CLASSES

REPO = Path(__file__).resolve().parents[2]
PROJECT = "qhybrid"
STACK = "kind"
STACK_FILE = REPO / "stacks" / f"Pulumi.{STACK}.yaml"

REQUIRE_CLUSTER_ENV = "QHYBRID_REQUIRE_CLUSTER"
LOG_DIR_ENV = "QHYBRID_CLUSTER_LOG_DIR"
GRAFANA_PASSWORD_ENV = "QHYBRID_GRAFANA_ADMIN_PASSWORD"
QPU_TOKEN_ENV = "QHYBRID_QPU_PROVIDER_TOKEN"

# Timeouts, in seconds.
TOOL_CHECK_TIMEOUT_S = 30  # `docker info`
KIND_CLI_TIMEOUT_S = 60  # `kind get ...`
CLUSTER_APPEAR_TIMEOUT_S = 20 * 60  # from `up` starting to the kind cluster answering
NODES_REGISTER_TIMEOUT_S = 5 * 60  # from the cluster answering to every pool's nodes registered
IMAGE_LOAD_TIMEOUT_S = 15 * 60  # one `kind load docker-image` (multi-GB GPU image included)
IMAGE_LOAD_ATTEMPTS = 3
LOADER_AFTER_UP_TIMEOUT_S = 10 * 60  # how long `up` having finished may wait for the loader
READY_TIMEOUT_S = 10 * 60  # each readiness check after `up`
DIAGNOSTICS_TIMEOUT_S = 3 * 60  # each kubectl / kind command of the teardown dump
POLL_INTERVAL_S = 5


# --------------------------------------------------------------------------- selection and skipping


# Modules of this folder in the order they run against the one cluster: the platform's
# readiness first, then the scenario workflow, then the game days that break things.
MODULE_ORDER = ("test_kind_stack", "test_workflow_kind", "test_gameday_cluster")


def _module_rank(item: pytest.Item) -> int:
    module = item.path.stem if item.path.parent == Path(__file__).parent else None
    return MODULE_ORDER.index(module) if module in MODULE_ORDER else -1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect ``cluster`` tests unless the ``-m`` expression names them; order this folder's modules."""
    if "cluster" in (config.getoption("markexpr", default="") or ""):
        items.sort(key=_module_rank)  # stable: the order within a module is kept
        return
    deselected = [item for item in items if item.get_closest_marker("cluster")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("cluster")]


@functools.cache
def missing_tools() -> tuple[str, ...]:
    """What stops a real cluster here, one phrase per missing tool (empty when none)."""
    missing = []
    docker = shutil.which("docker")
    if docker is None:
        missing.append("docker not on PATH")
    else:
        try:
            info = subprocess.run([docker, "info"], capture_output=True, timeout=TOOL_CHECK_TIMEOUT_S)
            reachable = info.returncode == 0
        except subprocess.TimeoutExpired:
            reachable = False
        if not reachable:
            missing.append("docker daemon not reachable (`docker info` failed)")
    missing += [f"{tool} not on PATH" for tool in ("kind", "pulumi") if shutil.which(tool) is None]
    return tuple(missing)


def skip_reason(missing: tuple[str, ...]) -> str:
    return "the kind stack needs docker, kind and the pulumi CLI: " + "; ".join(missing)


# --------------------------------------------------------------------------- small helpers


def wait_until(what: str, probe: Callable[[], tuple[bool, str]], timeout_s: float) -> str:
    """Poll ``probe`` (returning ``(done, detail)``) until done; fail with the last detail."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, detail = probe()
        if done:
            return detail
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not ready after {timeout_s:.0f} s; last seen: {detail}")
        time.sleep(POLL_INTERVAL_S)


def kind(*args: str, timeout: float = KIND_CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kind", *args], capture_output=True, text=True, timeout=timeout)


def kind_clusters() -> list[str]:
    result = kind("get", "clusters")
    return result.stdout.split() if result.returncode == 0 else []


def kind_kubeconfig(cluster: str) -> dict[str, Any] | None:
    """The cluster's kubeconfig once its control plane is up, else None."""
    result = kind("get", "kubeconfig", "--name", cluster)
    if result.returncode != 0 or not result.stdout.strip():
        return None
    return yaml.safe_load(result.stdout)


def api_client(kubeconfig: dict[str, Any]) -> Any:
    from kubernetes import config as kube_config

    return kube_config.new_client_from_config_dict(kubeconfig)


def normalise_image(reference: str) -> str:
    """``qhybrid/worker:dev`` -> ``docker.io/qhybrid/worker:dev``, as containerd names it."""
    first, _, rest = reference.partition("/")
    if not rest:
        return f"docker.io/library/{reference}"
    if "." in first or ":" in first or first == "localhost":
        return reference
    return f"docker.io/{reference}"


def image_placements(config: StackConfig) -> dict[str, tuple[str, ...]]:
    """Image -> the pools whose nodes run it (pools with no nodes left out), in loading order.

    The gateway goes first: its Deployment is the one `up` waits on. Workers run on
    every resource class's pool (the QPU branch's on the qpu-gateway pool), and the
    QuantumJob operator (the worker image too) on the system pool; the GPU worker, the
    largest and needed only by workflows, goes last, to the gpu pool only.
    """
    wanted: dict[str, set[str]] = {}
    wanted.setdefault(config.gateway_image, set()).add(RESOURCE_CLASSES["qpu"].pool)
    wanted.setdefault(config.worker_image, set()).add("system")
    for resource_class in RESOURCE_CLASSES.values():
        wanted.setdefault(config.worker_image, set()).add(resource_class.pool)
    wanted.setdefault(config.gpu_worker_image, set()).add(RESOURCE_CLASSES["gpu"].pool)
    sizes = config.pool_sizes()
    return {image: tuple(sorted(p for p in pools if sizes.get(p, 0) > 0)) for image, pools in wanted.items()}


def pool_nodes(core: Any, pools: tuple[str, ...]) -> dict[str, list[str]]:
    nodes = core.list_node(label_selector=f"{POOL_LABEL} in ({','.join(pools)})").items
    by_pool: dict[str, list[str]] = {pool: [] for pool in pools}
    for node in nodes:
        by_pool[node.metadata.labels[POOL_LABEL]].append(node.metadata.name)
    return by_pool


# --------------------------------------------------------------------------- the image loader


class _Stopped(Exception):
    pass


class ImageLoader(threading.Thread):
    """Loads each image into its pools' nodes as soon as the kind cluster has them."""

    def __init__(self, config: StackConfig, log_path: Path) -> None:
        super().__init__(name="kind-image-loader", daemon=True)
        self.cluster = config.cluster_name
        self.placements = image_placements(config)
        self.sizes = config.pool_sizes()
        self.log_path = log_path
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.loaded: dict[str, list[str]] = {}

    def _poll(self, what: str, probe: Callable[[], Any], timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what}: not after {timeout_s:.0f} s")
            if self.stop.wait(POLL_INTERVAL_S):
                raise _Stopped(what)

    def run(self) -> None:
        try:
            with self.log_path.open("w", encoding="utf-8") as log:
                self._load_all(log)
        except _Stopped:
            pass  # `up` ended before the cluster was ready; the fixture reports why
        except BaseException as error:  # noqa: BLE001 (handed to the fixture's thread)
            self.error = error

    def _load_all(self, log: IO[str]) -> None:
        from kubernetes import client

        log.write(f"waiting for kind cluster {self.cluster!r}\n")
        kubeconfig = self._poll(
            f"kind cluster {self.cluster!r} to answer",
            lambda: kind_kubeconfig(self.cluster),
            CLUSTER_APPEAR_TIMEOUT_S,
        )
        core = client.CoreV1Api(api_client(kubeconfig))
        for image, pools in self.placements.items():

            def registered(pools: tuple[str, ...] = pools) -> dict[str, list[str]] | None:
                try:
                    by_pool = pool_nodes(core, pools)
                except Exception:  # noqa: BLE001 (the API server may still be starting)
                    return None
                return by_pool if all(len(by_pool[p]) >= self.sizes[p] for p in pools) else None

            by_pool = self._poll(f"nodes of pools {pools}", registered, NODES_REGISTER_TIMEOUT_S)
            nodes = sorted(n for p in pools for n in by_pool[p])
            self._load(image, nodes, log)
            self.loaded[image] = nodes

    def _load(self, image: str, nodes: list[str], log: IO[str]) -> None:
        command = ["load", "docker-image", image, "--name", self.cluster, "--nodes", ",".join(nodes)]
        for attempt in range(1, IMAGE_LOAD_ATTEMPTS + 1):
            log.write(f"kind {' '.join(command)} (attempt {attempt})\n")
            log.flush()
            started = time.monotonic()
            result = kind(*command, timeout=IMAGE_LOAD_TIMEOUT_S)
            log.write(
                result.stdout
                + result.stderr
                + f"rc={result.returncode} in {time.monotonic() - started:.0f} s\n"
            )
            if result.returncode == 0:
                return
            if self.stop.wait(POLL_INTERVAL_S):
                raise _Stopped(image)
        raise RuntimeError(f"kind could not load {image} onto {nodes}: {result.stderr.strip()[-500:]}")


# --------------------------------------------------------------------------- the stack


@dataclass
class KindStack:
    stack: Any  # pulumi.automation.Stack
    outputs: dict[str, Any]  # name -> pulumi.automation.OutputValue
    config: StackConfig
    api: Any  # kubernetes.client.ApiClient
    kubeconfig_path: Path  # the cluster's kubeconfig, for kubectl/argo in later suites (mode 0600)
    log_dir: Path
    loaded: dict[str, list[str]] = field(default_factory=dict)  # image -> nodes it was loaded onto


def _line_writer(log: IO[str], prefix: str = "") -> Callable[[str], None]:
    def write(line: str) -> None:
        log.write(f"{prefix}{line}\n")
        log.flush()

    return write


def _preflight(config: StackConfig) -> None:
    if config.cluster_name in kind_clusters():
        pytest.fail(
            f"a kind cluster named {config.cluster_name!r} already exists; this test creates and deletes "
            f"its own (kind delete cluster --name {config.cluster_name}, then rerun)"
        )
    for image in image_placements(config):
        inspected = subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, timeout=TOOL_CHECK_TIMEOUT_S
        )
        if inspected.returncode != 0:
            pytest.fail(f"image {image} is not built here: run `make images` first")


def _workspace_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {"PULUMI_SKIP_UPDATE_CHECK": "true"}
    if not os.environ.get("PULUMI_BACKEND_URL"):
        env["PULUMI_BACKEND_URL"] = tmp_path_factory.mktemp("pulumi-state").as_uri()
    if not (os.environ.get("PULUMI_CONFIG_PASSPHRASE") or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        env["PULUMI_CONFIG_PASSPHRASE"] = secrets.token_urlsafe(32)
    return env


def _set_secrets(stack: Any) -> None:
    from pulumi import automation as auto

    password = os.environ.get(GRAFANA_PASSWORD_ENV) or secrets.token_urlsafe(24)
    stack.set_config(f"{PROJECT}:grafanaAdminPassword", auto.ConfigValue(value=password, secret=True))
    token = os.environ.get(QPU_TOKEN_ENV)
    if token:
        stack.set_config(f"{PROJECT}:qpuProviderToken", auto.ConfigValue(value=token, secret=True))
    # The in-cluster object store's S3 identity: made up for this run, as the password is.
    object_store = {
        "objectStoreAccessKey": secrets.token_hex(10),
        "objectStoreSecretKey": secrets.token_hex(20),
    }
    for key, value in object_store.items():
        stack.set_config(f"{PROJECT}:{key}", auto.ConfigValue(value=value, secret=True))
    # The stack file may hold them only encrypted.
    written = STACK_FILE.read_text(encoding="utf-8")
    assert password not in written and (not token or token not in written), "a secret was written in clear"
    assert not any(value in written for value in object_store.values()), "a secret was written in clear"
    stored = yaml.safe_load(written)["config"][f"{PROJECT}:grafanaAdminPassword"]
    assert isinstance(stored, dict) and set(stored) == {"secure"}, stored


def _write_kubeconfig(kubeconfig: dict[str, Any], path: Path) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig), encoding="utf-8")


def _dump_cluster(cluster: str, kubeconfig_path: Path, log_dir: Path, *, failed: bool) -> None:
    """What the cluster looked like before destroy: `kubectl get all -A` and friends."""
    kubeconfig = kind_kubeconfig(cluster)
    if kubeconfig is None:
        return
    _write_kubeconfig(kubeconfig, kubeconfig_path)
    commands = [
        ["get", "all", "-A", "-o", "wide"],
        ["get", "nodes", "-o", "wide", "--show-labels"],
        ["get", "clusterqueues,localqueues,resourceflavors,workloads", "-A", "-o", "wide"],
        ["get", "events", "-A", "--sort-by=.lastTimestamp"],
    ]
    if failed:
        commands.append(["describe", "pods", "-A"])
    with (log_dir / "cluster-state.txt").open("w", encoding="utf-8") as out:
        if shutil.which("kubectl") is None:
            out.write("kubectl not on PATH: no dump\n")
        else:
            for args in commands:
                out.write(f"$ kubectl {' '.join(args)}\n")
                result = subprocess.run(
                    ["kubectl", "--kubeconfig", str(kubeconfig_path), *args],
                    capture_output=True,
                    text=True,
                    timeout=DIAGNOSTICS_TIMEOUT_S,
                )
                out.write(result.stdout + result.stderr + "\n")
    if failed:
        kind("export", "logs", str(log_dir / "kind-logs"), "--name", cluster, timeout=DIAGNOSTICS_TIMEOUT_S)


@pytest.fixture(scope="session")
def kind_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KindStack]:
    missing = missing_tools()
    if missing:
        if os.environ.get(REQUIRE_CLUSTER_ENV) == "1":
            pytest.fail(f"{skip_reason(missing)} ({REQUIRE_CLUSTER_ENV}=1)")
        pytest.skip(skip_reason(missing))

    from pulumi import automation as auto

    config = load_stack_file(STACK)
    log_dir = Path(os.environ.get(LOG_DIR_ENV) or tmp_path_factory.mktemp("kind-stack-logs"))
    log_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig_path = tmp_path_factory.mktemp("kubeconfig") / "config"
    _preflight(config)

    original_stack_file = STACK_FILE.read_bytes()  # stack init and config set write to it; rm deletes it
    stack = None
    loader = None
    healthy = False
    problems: list[str] = []
    try:
        stack = auto.create_stack(
            STACK,
            work_dir=str(REPO),
            opts=auto.LocalWorkspaceOptions(env_vars=_workspace_env(tmp_path_factory)),
        )
        _set_secrets(stack)
        loader = ImageLoader(config, log_dir / "kind-load.log")
        loader.start()
        with (log_dir / "pulumi-up.log").open("w", encoding="utf-8") as log:
            up = stack.up(
                on_output=_line_writer(log),
                on_error=_line_writer(log, "stderr: "),
                color="never",
                suppress_progress=True,
            )
        loader.join(LOADER_AFTER_UP_TIMEOUT_S)
        assert not loader.is_alive(), f"images still loading {LOADER_AFTER_UP_TIMEOUT_S} s after `up`"
        if loader.error is not None:
            raise AssertionError(f"loading the images into kind failed: {loader.error}") from loader.error
        kubeconfig = kind_kubeconfig(config.cluster_name)
        assert kubeconfig is not None, (
            f"`up` succeeded but kind cluster {config.cluster_name!r} does not answer"
        )
        _write_kubeconfig(kubeconfig, kubeconfig_path)
        healthy = True
        yield KindStack(
            stack=stack,
            outputs=dict(up.outputs),
            config=config,
            api=api_client(kubeconfig),
            kubeconfig_path=kubeconfig_path,
            log_dir=log_dir,
            loaded=dict(loader.loaded),
        )
    finally:
        if loader is not None:
            loader.stop.set()
            loader.join(POLL_INTERVAL_S * 2)
        failed = not healthy or request.session.testsfailed > 0
        try:
            _dump_cluster(config.cluster_name, kubeconfig_path, log_dir, failed=failed)
        except Exception as error:  # noqa: BLE001 (a dump must never block the destroy)
            problems.append(f"cluster dump: {error}")
        destroyed = stack is None
        if stack is not None:
            try:
                with (log_dir / "pulumi-destroy.log").open("w", encoding="utf-8") as log:
                    stack.destroy(
                        on_output=_line_writer(log),
                        on_error=_line_writer(log, "stderr: "),
                        color="never",
                        suppress_progress=True,
                    )
                destroyed = True
            except Exception as error:  # noqa: BLE001
                problems.append(f"pulumi destroy failed (see pulumi-destroy.log): {error}")
            if not destroyed and config.cluster_name in kind_clusters():
                # Everything but the state lives in the cluster: take it down by hand.
                kind("delete", "cluster", "--name", config.cluster_name, timeout=DIAGNOSTICS_TIMEOUT_S)
            try:
                stack.workspace.remove_stack(STACK, force=not destroyed)
            except Exception as error:  # noqa: BLE001
                problems.append(f"pulumi stack rm failed: {error}")
        if not STACK_FILE.exists() or STACK_FILE.read_bytes() != original_stack_file:
            STACK_FILE.write_bytes(original_stack_file)
        if destroyed and config.cluster_name in kind_clusters():
            problems.append(f"kind cluster {config.cluster_name!r} survived `pulumi destroy`")
        if problems:
            pytest.fail("kind stack teardown: " + "; ".join(problems), pytrace=False)


@dataclass(frozen=True)
class KubeClients:
    core: Any  # kubernetes.client.CoreV1Api
    apps: Any  # kubernetes.client.AppsV1Api
    custom: Any  # kubernetes.client.CustomObjectsApi


@pytest.fixture(scope="session")
def kube(kind_stack: KindStack) -> KubeClients:
    """Kubernetes API clients on the kind stack's cluster."""
    from kubernetes import client

    return KubeClients(
        core=client.CoreV1Api(kind_stack.api),
        apps=client.AppsV1Api(kind_stack.api),
        custom=client.CustomObjectsApi(kind_stack.api),
    )
