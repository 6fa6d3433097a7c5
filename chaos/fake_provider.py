"""A stand-in for IBM Quantum's service, so provider-credential faults can run without the network.

``python -m qhybrid_chaos.fake_provider gateway serve ...`` is ``qhybrid gateway
serve`` with ``qiskit_ibm_runtime.QiskitRuntimeService`` replaced by
:class:`FakeRuntimeService`: it accepts only the tokens listed (one a line) in
the file named by ``QHYBRID_CHAOS_PROVIDER_TOKENS`` (the provider's side of a
credential), refusing others with ``IBMNotAuthorizedError`` as the real service
does, and its device is a seeded noiseless Aer simulator, so the gateway's IBM
adapter (SamplerV2, provider job ids, credential reload) runs unchanged and
gives the same counts for the same job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["ACCEPTED_ENV", "FakeRuntimeService"]

ACCEPTED_ENV = "QHYBRID_CHAOS_PROVIDER_TOKENS"
SEED = 20260101


def _accepted(token: str) -> bool:
    accepted_file = os.environ.get(ACCEPTED_ENV)
    return accepted_file is not None and token in Path(accepted_file).read_text().split()


class FakeRuntimeService:
    """Opens only with an accepted token; serves one seeded Aer device under any name."""

    def __init__(self, *, channel: str, token: str, instance: str | None = None, **_: Any) -> None:
        """Check ``token`` against the accepted list, as the provider would."""
        from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

        if not _accepted(token):
            raise IBMNotAuthorizedError("401 Client Error: Unauthorized: the API token is not valid")
        self.channel, self.instance, self._token = channel, instance, token

    def backend(self, name: str) -> Any:
        """Return the seeded simulator standing in for ``name``; it refuses jobs once the token is revoked."""
        from qiskit_aer import AerSimulator

        token = self._token

        class Device(AerSimulator):
            def run(self, circuits: Any, **options: Any) -> Any:
                from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

                if not _accepted(token):
                    raise IBMNotAuthorizedError("401 Client Error: Unauthorized: the API token was revoked")
                return super().run(circuits, **options)

        return Device(seed_simulator=SEED, max_parallel_threads=1)

    def job(self, job_id: str) -> Any:
        """Jobs run locally and are not kept: there is nothing to fetch after a restart."""
        from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

        raise RuntimeJobNotFound(f"job {job_id} not found")


def main() -> None:
    """Run the qhybrid command line with the fake service in place."""
    import qiskit_ibm_runtime

    qiskit_ibm_runtime.QiskitRuntimeService = FakeRuntimeService
    from qhybrid.cli import main as qhybrid_main

    qhybrid_main()


if __name__ == "__main__":
    main()
