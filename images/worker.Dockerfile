# The CPU worker: runs the workflow steps (`qhybrid step generate|execute|reconstruct|report`)
# in Argo pods. Build from the repository root (`make images`), e.g.
#   docker build -f images/worker.Dockerfile -t qhybrid/worker:dev .
#
# Pods run it as uid/gid 10001 with a read-only root filesystem: the only
# writable places are mounted volumes and /tmp (an emptyDir), so HOME and the
# matplotlib/XDG caches point there. No secret is baked in: no ENV, no ARG.

# ---- build: a virtual environment holding qhybrid and its dependencies ----
FROM python:3.12.12-slim-bookworm AS builder
# A failing command anywhere in a piped RUN fails the build (hadolint DL4006).
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
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
RUN pip install . \
 && pip check

# ---- run: the virtual environment on a clean base, as a non-root user ----
FROM python:3.12.12-slim-bookworm
# A failing command anywhere in a piped RUN fails the build (hadolint DL4006).
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
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
# Smoke test as the runtime user: the entry point starts and the simulator imports.
RUN qhybrid --help >/dev/null \
 && python -c "import qhybrid.pipeline.generate, qiskit_addon_cutting; from qiskit_aer import AerSimulator; AerSimulator()"
# tini is PID 1 so SIGTERM (Kueue preemption, pod deletion) reaches qhybrid.
# Argo templates pass the step as args (`step execute ...`), keeping this entry point.
ENTRYPOINT ["tini", "--", "qhybrid"]
CMD ["--help"]
