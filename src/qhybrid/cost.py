"""What a run costs: a price table, the resources a run used, and the estimate from both.

One table prices CPU core-hours, GPU-hours and QPU shots per gateway backend. The
stack config declares it (``priceCurrency``, ``priceCpuCoreHour``, ``priceGpuHour``,
``priceQpuShot``); a run's report prices its own usage with it, and the monitoring
part's recording rules price the same usage as the cluster measures it
(``qhybrid.blueprint.monitoring.cost``). Both compute ``seconds / 3600 * price`` and
``shots * price``, so given the same usage they give the same figure.

QPU time is priced per shot only: the gateway does not see how long a provider ran a
job (its latency includes the provider's queue), so a per-second price would bill waiting.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qhybrid.errors import InputError

_CURRENCY = re.compile(r"^[A-Z]{3}$")
SECONDS_PER_HOUR = 3600


def _price(text: Any, key: str) -> float:
    """A price as a non-negative finite number; one clear line naming ``key`` otherwise."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputError(key, f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise InputError(key, f"must be a finite number of at least 0, got {text!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class PriceTable:
    """Prices in ``currency``: per CPU core-hour, per GPU-hour, per shot on each gateway backend."""

    currency: str
    cpu_core_hour: float
    gpu_hour: float
    qpu_shot: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse a table a cost could not be computed from, naming the field."""
        if not _CURRENCY.match(self.currency):
            raise InputError(
                "priceCurrency", f"must be a three-letter code such as USD, got {self.currency!r}"
            )
        _price(self.cpu_core_hour, "priceCpuCoreHour")
        _price(self.gpu_hour, "priceGpuHour")
        for backend, price in self.qpu_shot.items():
            _price(price, f"priceQpuShot[{backend}]")

    @classmethod
    def parse(cls, currency: str, cpu_core_hour: Any, gpu_hour: Any, qpu_shot: Iterable[str]) -> PriceTable:
        """Build a table from config text; ``qpu_shot`` entries read ``<gateway backend>=<price>``."""
        shots: dict[str, float] = {}
        for entry in qpu_shot:
            backend, sep, price = str(entry).partition("=")
            if not sep or not backend.strip():
                raise InputError(
                    "priceQpuShot", f"entries read <gateway backend>=<price per shot>, got {entry!r}"
                )
            if backend.strip() in shots:
                raise InputError("priceQpuShot", f"backend {backend.strip()!r} is priced twice")
            shots[backend.strip()] = _price(price.strip(), f"priceQpuShot[{backend.strip()}]")
        return cls(
            currency=currency,
            cpu_core_hour=_price(cpu_core_hour, "priceCpuCoreHour"),
            gpu_hour=_price(gpu_hour, "priceGpuHour"),
            qpu_shot=dict(sorted(shots.items())),
        )

    def to_json(self) -> dict[str, Any]:
        """The table as plain JSON (reports, the generate step's ``--prices``)."""
        return {
            "currency": self.currency,
            "cpu_core_hour": self.cpu_core_hour,
            "gpu_hour": self.gpu_hour,
            "qpu_shot": dict(self.qpu_shot),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PriceTable:
        """Read ``to_json``'s form back."""
        try:
            return cls(
                currency=str(data["currency"]),
                cpu_core_hour=_price(data["cpu_core_hour"], "prices.cpu_core_hour"),
                gpu_hour=_price(data["gpu_hour"], "prices.gpu_hour"),
                qpu_shot={
                    str(k): _price(v, f"prices.qpu_shot[{k}]") for k, v in data.get("qpu_shot", {}).items()
                },
            )
        except KeyError as missing:
            raise InputError("--prices", f"the price table has no {missing.args[0]!r}") from None


def prices_from_text(text: str) -> PriceTable:
    """Read a price table given as JSON text (``--prices``); one line naming the flag when it is not."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError("--prices", f"is not JSON: {error.msg} at character {error.pos}") from None
    if not isinstance(data, dict):
        raise InputError("--prices", f"must be a JSON object, got {type(data).__name__}")
    return PriceTable.from_json(data)


@dataclass(frozen=True)
class Usage:
    """What a run used: CPU seconds of its steps' work, seconds in the GPU backend, QPU shots per backend."""

    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    qpu_shots: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The usage as plain JSON (the report's ``provenance.cost.usage``)."""
        return {
            "cpu_seconds": self.cpu_seconds,
            "gpu_seconds": self.gpu_seconds,
            "qpu_shots": dict(sorted(self.qpu_shots.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Usage:
        """Read ``to_json``'s form back."""
        return cls(
            float(data.get("cpu_seconds", 0.0)),
            float(data.get("gpu_seconds", 0.0)),
            {str(k): int(v) for k, v in (data.get("qpu_shots") or {}).items()},
        )


def estimate(usage: Usage, prices: PriceTable) -> dict[str, Any]:
    """Price ``usage``: cost per resource and in total, and the QPU backends the table has no price for.

    The arithmetic is the recording rules': ``seconds / 3600 * price`` and ``shots * price``.
    """
    cpu = usage.cpu_seconds / SECONDS_PER_HOUR * prices.cpu_core_hour
    gpu = usage.gpu_seconds / SECONDS_PER_HOUR * prices.gpu_hour
    qpu = 0.0
    unpriced = []
    for backend, shots in sorted(usage.qpu_shots.items()):
        if backend in prices.qpu_shot:
            qpu += shots * prices.qpu_shot[backend]
        elif shots:
            unpriced.append(backend)
    return {
        "currency": prices.currency,
        "cpu": cpu,
        "gpu": gpu,
        "qpu": qpu,
        "total": cpu + gpu + qpu,
        "unpriced_qpu_backends": unpriced,
    }
