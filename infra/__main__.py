"""The Pulumi program: the whole platform for one stack (`pulumi up -s kind|eks`).

Config is loaded and validated before any resource exists; every Kubernetes
resource uses the provider built from the cluster's own kubeconfig output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pulumi

# Pulumi runs this file as a script from infra/; make `infra` and `qhybrid` importable as packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.stack import build_stack  # noqa: E402

outputs = build_stack()
for key, value in outputs.items():
    pulumi.export(key, value)
