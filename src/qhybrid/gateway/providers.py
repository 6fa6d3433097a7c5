"""The devices behind the gateway: emulated IBM devices, noiseless Aer, IBM Quantum, and a trivial one.

Every backend returns, per circuit, counts keyed by ``hex(outcome)`` where bit
``j`` of ``outcome`` is the circuit's classical bit ``j`` (``circuit.clbits``
order), which is also what Aer's own counts use. Randomness comes from the
per-circuit seeds only, so the same job always gives the same counts.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from qiskit import QuantumCircuit

from qhybrid.gateway.config import BackendConfig
from qhybrid.gateway.credentials import CredentialStore, redact
from qhybrid.gateway.payload import PayloadError

log = logging.getLogger("qhybrid.gateway.providers")
Counts = dict[str, int]


class ProviderError(Exception):
    """The provider failed a job; the message is safe to store and show (secrets scrubbed)."""

    def __init__(self, message: str, *, auth: bool = False) -> None:
        """Record the message and whether the provider refused the gateway's credentials."""
        super().__init__(message)
        self.auth = auth


class NotResumable(Exception):
    """A provider job cannot be fetched again (local execution): run the job anew."""


class GatewayBackend(Protocol):
    """What the executor needs from a backend."""

    config: BackendConfig

    def properties(self) -> dict[str, Any]:
        """Return qubits, basis gates, device and whether it is a simulator."""
        ...

    def calibration_time(self) -> float | None:
        """Return the epoch time of the last calibration, if the device has one."""
        ...

    def check(self, circuits: Sequence[QuantumCircuit]) -> None:
        """Raise :class:`PayloadError` for circuits this backend cannot run."""
        ...

    def run(
        self,
        circuits: Sequence[QuantumCircuit],
        shots: int,
        seeds: Sequence[int],
        on_submitted: Callable[[str], None],
    ) -> list[Counts]:
        """Run the circuits; ``on_submitted`` records a provider job id before waiting on it."""
        ...

    def resume(self, provider_job_id: str, circuits: Sequence[QuantumCircuit]) -> list[Counts]:
        """Fetch the result of a job submitted before a restart, or raise :class:`NotResumable`."""
        ...


def fake_device(name: str) -> Any:
    """Return qiskit-ibm-runtime's offline fake backend ``fake_<device>`` (e.g. fake_manila)."""
    module = importlib.import_module("qiskit_ibm_runtime.fake_provider")
    stem = "Fake" + "".join(part.capitalize() for part in name.removeprefix("fake_").split("_"))
    for class_name in (stem + "V2", stem):
        cls = getattr(module, class_name, None)
        if cls is not None:
            return cls()
    raise ValueError(f"unknown fake device {name!r} (qiskit-ibm-runtime has no {stem}V2)")


def _epoch(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    return None


def _device_calibration(device: Any) -> float | None:
    try:
        properties = device.properties()
    except Exception:  # noqa: BLE001 - devices without properties have no calibration
        return None
    return _epoch(getattr(properties, "last_update_date", None)) if properties is not None else None


def widest(backends: Iterable[GatewayBackend], default: int) -> int:
    """Return the widest backend's qubit count: the bound an OpenQASM register is checked against.

    Only local backends are asked (a remote device's properties cost a provider call,
    with its credentials); with any remote one, or none that can say, ``default``.
    """
    widths = []
    for backend in backends:
        if backend.config.kind == "ibm" and not backend.config.local:
            return default
        try:
            widths.append(int(backend.properties()["qubits"]))
        except Exception:  # noqa: BLE001 - a backend that cannot say is bounded by the default
            return default
    return max(widths, default=default)


def _check_width(circuits: Sequence[QuantumCircuit], num_qubits: int, name: str) -> None:
    for position, circuit in enumerate(circuits):
        if circuit.num_qubits > num_qubits:
            raise PayloadError(
                400,
                "too_many_qubits",
                f"circuits[{position}]: {circuit.num_qubits} qubits, {name} has {num_qubits}",
            )


def _aer_counts(result: Any, position: int) -> Counts:
    return {key: int(value) for key, value in result.data(position)["counts"].items()}


class AerNoiseless:
    """qiskit-aer without noise: the ideal device."""

    def __init__(self, config: BackendConfig) -> None:
        """Create the simulator (one thread per job: jobs run in parallel, each stays deterministic)."""
        from qiskit_aer import AerSimulator

        self.config = config
        self._simulator = AerSimulator(max_parallel_threads=1)

    def properties(self) -> dict[str, Any]:
        """Return Aer's description."""
        return {
            "qubits": 30,
            "basis_gates": sorted(self._simulator.target.operation_names),
            "simulator": True,
        }

    def calibration_time(self) -> float | None:
        """An ideal simulator has no calibration."""
        return None

    def check(self, circuits: Sequence[QuantumCircuit]) -> None:
        """Refuse circuits wider than a statevector this service will hold."""
        _check_width(circuits, 30, self.config.name)

    def run(self, circuits, shots, seeds, on_submitted) -> list[Counts]:
        """Transpile for Aer and sample each circuit with its own seed."""
        from qiskit import transpile

        out = []
        for circuit, seed in zip(circuits, seeds, strict=True):
            compiled = transpile(circuit, self._simulator, optimization_level=0, seed_transpiler=seed)
            result = self._simulator.run(compiled, shots=shots, seed_simulator=seed).result()
            out.append(_aer_counts(result, 0))
        return out

    def resume(self, provider_job_id: str, circuits: Sequence[QuantumCircuit]) -> list[Counts]:
        """Local execution is not resumable."""
        raise NotResumable(provider_job_id)


class Emulator:
    """qiskit-aer with a fake IBM device's noise model and coupling map; circuits go to its ISA first."""

    def __init__(self, config: BackendConfig) -> None:
        """Build the device's noise model once."""
        from qiskit_aer import AerSimulator

        assert config.device is not None
        self.config = config
        self.device = fake_device(config.device)
        self._simulator = AerSimulator.from_backend(self.device, max_parallel_threads=1)
        self._calibration = _device_calibration(self.device)

    def properties(self) -> dict[str, Any]:
        """Return the device's size and basis gates."""
        return {
            "qubits": self.device.num_qubits,
            "basis_gates": sorted(self.device.operation_names),
            "device": self.device.name,
            "simulator": True,
            "noise_model": f"{self.device.name} calibration snapshot",
        }

    def calibration_time(self) -> float | None:
        """Return the snapshot's calibration time."""
        return self._calibration

    def check(self, circuits: Sequence[QuantumCircuit]) -> None:
        """Refuse circuits wider than the device."""
        _check_width(circuits, self.device.num_qubits, self.config.name)

    def run(self, circuits, shots, seeds, on_submitted) -> list[Counts]:
        """Transpile each circuit to the device (seeded layout and routing), then simulate with noise."""
        from qiskit import transpile

        out = []
        for circuit, seed in zip(circuits, seeds, strict=True):
            isa = transpile(circuit, backend=self.device, optimization_level=1, seed_transpiler=seed)
            result = self._simulator.run(isa, shots=shots, seed_simulator=seed).result()
            out.append(_aer_counts(result, 0))
        return out

    def resume(self, provider_job_id: str, circuits: Sequence[QuantumCircuit]) -> list[Counts]:
        """Local execution is not resumable."""
        raise NotResumable(provider_job_id)


_PERMUTATION_GATES = frozenset({"x", "cx", "ccx", "swap", "id", "barrier", "measure", "reset", "delay"})


class Trivial:
    """A classical simulator of permutation circuits (X, CX, CCX, SWAP): the gateway benchmark's backend.

    Every outcome is deterministic, so it costs microseconds and measures the
    gateway's own overhead; ``seconds_per_job`` emulates a device's run time.
    """

    def __init__(self, config: BackendConfig) -> None:
        """Keep the config."""
        self.config = config

    def properties(self) -> dict[str, Any]:
        """Return the gates it simulates."""
        return {"qubits": 64, "basis_gates": sorted(_PERMUTATION_GATES), "simulator": True}

    def calibration_time(self) -> float | None:
        """A classical simulator has no calibration."""
        return None

    def check(self, circuits: Sequence[QuantumCircuit]) -> None:
        """Refuse gates that are not permutations of basis states."""
        _check_width(circuits, 64, self.config.name)
        for position, circuit in enumerate(circuits):
            names = {instruction.operation.name for instruction in circuit.data} - _PERMUTATION_GATES
            if names:
                raise PayloadError(
                    400,
                    "unsupported_gates",
                    f"circuits[{position}]: {self.config.name} runs only {sorted(_PERMUTATION_GATES)}, "
                    f"not {sorted(names)}",
                )

    def run(self, circuits, shots, seeds, on_submitted) -> list[Counts]:
        """Push each basis state through the circuit; all shots land on its one outcome."""
        if self.config.seconds_per_job:
            time.sleep(self.config.seconds_per_job)
        out = []
        for circuit in circuits:
            qubit = {bit: i for i, bit in enumerate(circuit.qubits)}
            clbit = {bit: i for i, bit in enumerate(circuit.clbits)}
            state = outcome = 0
            for instruction in circuit.data:
                name = instruction.operation.name
                q = [qubit[b] for b in instruction.qubits]
                if name == "x":
                    state ^= 1 << q[0]
                elif name == "cx" and state >> q[0] & 1:
                    state ^= 1 << q[1]
                elif name == "ccx" and state >> q[0] & 1 and state >> q[1] & 1:
                    state ^= 1 << q[2]
                elif name == "swap" and (state >> q[0] & 1) != (state >> q[1] & 1):
                    state ^= (1 << q[0]) | (1 << q[1])
                elif name == "reset":
                    state &= ~(1 << q[0])
                elif name == "measure":
                    c = clbit[instruction.clbits[0]]
                    outcome = (outcome & ~(1 << c)) | ((state >> q[0] & 1) << c)
            out.append({hex(outcome): shots})
        return out

    def resume(self, provider_job_id: str, circuits: Sequence[QuantumCircuit]) -> list[Counts]:
        """Local execution is not resumable."""
        raise NotResumable(provider_job_id)


def _sampler_counts(pub_result: Any, circuit: QuantumCircuit) -> Counts:
    """Join a SamplerV2 result's registers into counts over the circuit's classical bits."""
    from qiskit.primitives import BitArray

    registers = [creg for creg in circuit.cregs if creg.size]
    joined = BitArray.concatenate_bits([getattr(pub_result.data, creg.name) for creg in registers])
    # concatenate_bits puts the first register lowest; map each register bit to its clbit index.
    positions = [circuit.find_bit(bit).index for creg in registers for bit in creg]
    counts: Counts = {}
    for value, count in joined.get_int_counts().items():
        if positions == list(range(len(positions))):
            outcome = value
        else:
            outcome = sum(((value >> k) & 1) << j for k, j in enumerate(positions))
        counts[hex(outcome)] = counts.get(hex(outcome), 0) + int(count)
    return counts


class IBMQuantum:
    """IBM Quantum through qiskit-ibm-runtime's SamplerV2.

    With ``local: <fake device>`` it runs in the runtime's local testing mode (a
    fake backend passed as the sampler's mode), the same code path without the
    network; otherwise it opens a ``QiskitRuntimeService`` with the mounted token
    and instance, and opens it anew when they change.
    """

    def __init__(
        self, config: BackendConfig, credentials: CredentialStore, on_auth_failure: Callable[[], None]
    ):
        """Prepare the adapter; the remote service is opened on first use."""
        self.config = config
        self.credentials = credentials
        self.on_auth_failure = on_auth_failure
        self._lock = threading.Lock()
        self._service: Any = None
        self._service_generation = -1
        self._remote_device: Any = None
        self._calibration: tuple[float, float | None] | None = None
        self.local_device = fake_device(config.local) if config.local else None
        if self.local_device is not None:
            self._refresh_calibration(self.local_device)

    def _device(self) -> Any:
        """Return the fake device (local mode) or the service's backend, reopening on new credentials."""
        if self.local_device is not None:
            return self.local_device
        credentials = self.credentials.current()
        with self._lock:
            if self._service is None or self._service_generation != credentials.generation:
                if credentials.token is None:
                    raise ProviderError("no provider token is mounted (ibm-quantum-token)", auth=True)
                from qiskit_ibm_runtime import QiskitRuntimeService

                try:
                    self._service = QiskitRuntimeService(
                        channel=self.config.channel,
                        token=credentials.token.reveal(),
                        instance=credentials.instance,
                    )
                    self._remote_device = self._service.backend(self.config.device)
                except Exception as error:
                    raise self._provider_error(error) from None
                self._service_generation = credentials.generation
            self._refresh_calibration(self._remote_device)
            return self._remote_device

    def _provider_error(self, error: Exception) -> ProviderError:
        from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

        auth = isinstance(error, IBMNotAuthorizedError) or "401" in str(error) or "403" in str(error)
        if auth:
            self.on_auth_failure()
        message = redact(f"{type(error).__name__}: {error}", self.credentials.secrets())
        return ProviderError(f"IBM Quantum: {' '.join(message.split())[:500]}", auth=auth)

    def properties(self) -> dict[str, Any]:
        """Return the device's size and basis gates (the fake device's in local mode)."""
        device = self.local_device
        if device is None:
            try:
                device = self._device()
            except ProviderError as error:
                return {"device": self.config.device, "available": False, "reason": str(error)}
        return {
            "qubits": device.num_qubits,
            "basis_gates": sorted(device.operation_names),
            "device": device.name,
            "simulator": self.local_device is not None,
            "mode": "local testing mode" if self.local_device is not None else "IBM Quantum",
        }

    def calibration_time(self) -> float | None:
        """Return the last calibration seen; never calls the provider (scrapes must not block)."""
        return None if self._calibration is None else self._calibration[1]

    def _refresh_calibration(self, device: Any) -> None:
        """Ask the device for its calibration time, at most every five minutes (it changes daily)."""
        now = time.monotonic()
        if self._calibration is None or now - self._calibration[0] > 300:
            self._calibration = (now, _device_calibration(device))

    def check(self, circuits: Sequence[QuantumCircuit]) -> None:
        """Refuse circuits wider than the local device (a remote device checks on submit)."""
        if self.local_device is not None:
            _check_width(circuits, self.local_device.num_qubits, self.config.name)

    def _sampler(self, device: Any) -> Any:
        with warnings.catch_warnings():
            # qiskit-ibm-runtime 0.50 deprecates SamplerV2 in favour of its client-side
            # Sampler; SamplerV2 is the primitive every released service version accepts.
            warnings.simplefilter("ignore", DeprecationWarning)
            from qiskit_ibm_runtime import SamplerV2

            return SamplerV2(mode=device)

    def run(self, circuits, shots, seeds, on_submitted) -> list[Counts]:
        """Transpile to the device's ISA and run through SamplerV2.

        A job refused for its credentials while newer ones were loaded (a rotation that
        revoked the old token as this job ran) runs once more, with the new ones.
        """
        generation = self.credentials.current().generation
        try:
            return self._run_once(circuits, shots, seeds, on_submitted)
        except ProviderError as error:
            if not error.auth or self.credentials.current().generation == generation:
                raise
            log.info("provider refused a job's rotated-out credentials; running it with the new ones")
            return self._run_once(circuits, shots, seeds, on_submitted)

    def _run_once(self, circuits, shots, seeds, on_submitted) -> list[Counts]:
        from qiskit.transpiler import generate_preset_pass_manager

        device = self._device()
        isa = [
            generate_preset_pass_manager(backend=device, optimization_level=1, seed_transpiler=seed).run(
                circuit
            )
            for circuit, seed in zip(circuits, seeds, strict=True)
        ]
        sampler = self._sampler(device)
        try:
            if self.local_device is not None:
                # One sampler job per circuit so each runs with its own seed. The local
                # service ignores a falsy seed_simulator, so seeds are offset by one.
                out = []
                for circuit, seed in zip(isa, seeds, strict=True):
                    sampler.options.simulator.seed_simulator = seed + 1
                    job = sampler.run([circuit], shots=shots)
                    out.append(_sampler_counts(job.result()[0], circuit))
                return out
            job = sampler.run(isa, shots=shots)
            # Recorded before waiting: after a restart the result is fetched, not paid for twice.
            on_submitted(job.job_id())
            result = job.result()
        except ProviderError:
            raise
        except Exception as error:
            raise self._provider_error(error) from None
        return [_sampler_counts(pub, circuit) for pub, circuit in zip(result, isa, strict=True)]

    def resume(self, provider_job_id: str, circuits: Sequence[QuantumCircuit]) -> list[Counts]:
        """Fetch a remote job's result by its id (local jobs are not resumable)."""
        if (
            self.local_device is not None
            or self._service is None
            and self.credentials.current().token is None
        ):
            raise NotResumable(provider_job_id)
        self._device()
        try:
            result = self._service.job(provider_job_id).result()
        except Exception as error:
            raise self._provider_error(error) from None
        # Classical bits keep their registers through transpilation, so the originals map them.
        return [_sampler_counts(pub, circuit) for pub, circuit in zip(result, circuits, strict=True)]


def build_backend(
    config: BackendConfig, credentials: CredentialStore, on_provider_auth_failure: Callable[[], None]
) -> GatewayBackend:
    """Create the backend a config entry describes."""
    if config.kind == "aer":
        return AerNoiseless(config)
    if config.kind == "emulator":
        return Emulator(config)
    if config.kind == "trivial":
        return Trivial(config)
    return IBMQuantum(config, credentials, on_provider_auth_failure)
