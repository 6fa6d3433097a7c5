"""The QPU backend slot.

Subexperiments routed to ``qpu`` go to real or emulated quantum hardware through
the cluster's QPU gateway service, which holds the provider credentials so that
workers never see them. Until a gateway client is configured this backend
refuses to start, before any work is done, with a message saying so.
"""

from __future__ import annotations

from qhybrid.errors import BackendUnavailable


def qpu_backend() -> None:
    """Fail with the reason the QPU backend cannot run in this build."""
    raise BackendUnavailable(
        "qpu backend: no QPU gateway client is available in this build; "
        "use --policy cpu (or gpu) to run every subexperiment on a simulator"
    )
