# The GPU worker: the CPU worker's entry points with qiskit-aer-gpu (CUDA 12)
# in place of qiskit-aer. Build from the repository root (`make images`), e.g.
#   docker build -f images/worker-gpu.Dockerfile -t qhybrid/worker-gpu:dev .
#
# The CUDA libraries (cuBLAS, cuSOLVER, cuSPARSE, cudart, cuQuantum) come as pip
# wheels that qiskit-aer-gpu depends on and finds through its RPATH, so the small
# CUDA "base" image is enough; it carries the NVIDIA container runtime settings
# (NVIDIA_VISIBLE_DEVICES, NVIDIA_DRIVER_CAPABILITIES) and the node supplies the
# driver. Ubuntu 24.04's python3 is 3.12, inside pyproject's requires-python.
#
# Pods run it as uid/gid 10001 with a read-only root filesystem: the only
# writable places are mounted volumes and /tmp (an emptyDir). No secret is baked in.

# ---- build: a virtual environment holding qhybrid and qiskit-aer-gpu ----
FROM nvidia/cuda:12.9.1-base-ubuntu24.04 AS builder
# A failing command anywhere in a piped RUN fails the build (hadolint DL4006).
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what `pip install .` reads: pyproject, its readme and the package-dir trees.
COPY pyproject.toml README.md ./
COPY src ./src
COPY scenarios ./scenarios
# pyproject.toml maps chaos/ to qhybrid_chaos (game-day probes; never imported in the image).
COPY chaos ./chaos
# pyproject.toml maps the root to qhybrid.project: Pulumi.yaml and the stack files ship as its data.
COPY Pulumi.yaml ./
COPY stacks ./stacks
# qiskit-aer-gpu at exactly the range pyproject gives qiskit-aer (read, not repeated).
RUN python -c "import re, tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print(*[d.replace('qiskit-aer', 'qiskit-aer-gpu', 1) for d in deps if re.match(r'qiskit-aer\s*[<>=!~]', d)], sep='\n')" > /tmp/requirements-gpu.txt \
 && grep -q '^qiskit-aer-gpu' /tmp/requirements-gpu.txt
# The project first (it and qiskit-addon-cutting pull the CPU qiskit-aer), then
# swap the CPU build for the GPU one: both ship the `qiskit_aer` package, so the
# CPU distribution must be gone before the GPU one is unpacked.
RUN pip install . \
 && pip uninstall -y qiskit-aer \
 && pip install -r /tmp/requirements-gpu.txt \
 && { pip check > /tmp/pip-check-all.txt || true; } \
 && { grep -v -e 'requires qiskit-aer, which is not installed' -e '^No broken requirements' \
        /tmp/pip-check-all.txt || true; } > /tmp/pip-check.txt \
 && cat /tmp/pip-check.txt \
 && test ! -s /tmp/pip-check.txt

# ---- run: the virtual environment on a clean CUDA base, as a non-root user ----
FROM nvidia/cuda:12.9.1-base-ubuntu24.04
# A failing command anywhere in a piped RUN fails the build (hadolint DL4006).
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 qhybrid \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin qhybrid \
 && install -d -o 10001 -g 10001 /workspace
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    MPLBACKEND=Agg \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /workspace
USER 10001:10001
# Smoke test as the runtime user: the GPU build of Aer is the one installed and its
# CUDA libraries load (no GPU is needed to import it; `available_devices` lists
# what the build supports).
RUN qhybrid --help >/dev/null \
 && python -c "import importlib.metadata as md; from qiskit_aer import AerSimulator; md.version('qiskit-aer-gpu'); assert 'GPU' in AerSimulator().available_devices(), AerSimulator().available_devices()" \
 && ! python -c "import importlib.metadata as md; md.version('qiskit-aer')" 2>/dev/null
# tini is PID 1 so SIGTERM (Kueue preemption, pod deletion) reaches qhybrid.
ENTRYPOINT ["tini", "--", "qhybrid"]
CMD ["--help"]
