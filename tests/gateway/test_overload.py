"""Overload is refused early and cheaply, and the request timer sees what the client waits for."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from qhybrid.blueprint.monitoring import metric_names
from qhybrid.gateway import app as gateway_app
from tests.gateway.conftest import auth, base_config, in_process, job_body
from tests.gateway.test_api import metric_value


class HeldAdmission:
    """Admission that waits for ``release`` once it has begun (``entered``), holding its slot."""

    def __init__(self) -> None:
        self.release, self.entered = threading.Event(), threading.Event()
        self.real_admit = gateway_app.admit

    def __call__(self, *args: Any) -> Any:
        self.entered.set()
        self.release.wait(10)
        return self.real_admit(*args)


def test_a_submit_over_the_admission_bound_gets_429_before_its_body_is_read(tmp_path, monkeypatch):
    held = HeldAdmission()
    monkeypatch.setattr(gateway_app, "admit", held)
    data = base_config(queue={"max_admissions_in_flight": 1})
    with in_process(tmp_path, data) as (client, _):
        first: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: first.update(r=client.post("/v1/jobs", json=job_body("a"), headers=auth("alice")))
        )
        worker.start()
        assert held.entered.wait(10)
        # The second submit is refused by the middleware: an unparseable body proves it was never read.
        refused = client.post("/v1/jobs", content=b"{not json", headers=auth("alice"))
        held.release.set()
        worker.join(10)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert refused.json()["error"] == "overloaded"
        assert "max_admissions_in_flight" in refused.json()["detail"]
        assert first["r"].status_code == 202
        assert metric_value(client, metric_names.GATEWAY_ADMISSION_REJECTIONS_TOTAL, reason="overloaded") == 1
        # Every answer is timed by route, method and status, the refusal too.
        count = metric_names.GATEWAY_REQUEST_DURATION_SECONDS + "_count"
        assert metric_value(client, count, route="/v1/jobs", method="POST", status="429") == 1
        assert metric_value(client, count, route="/v1/jobs", method="POST", status="202") == 1


def test_submits_beside_others_are_refused_while_the_event_loop_runs_late(tmp_path, monkeypatch):
    with in_process(tmp_path) as (client, gateway):
        late = time.monotonic() + 3600  # a sample that stays in the window for the test
        gateway.loop_lag._samples.append((late, 0.2))
        # A lone submit is accepted: a slow loop with nothing else being admitted is not overload.
        assert client.post("/v1/jobs", json=job_body("alone"), headers=auth("alice")).status_code == 202
        held = HeldAdmission()
        monkeypatch.setattr(gateway_app, "admit", held)
        first: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: first.update(r=client.post("/v1/jobs", json=job_body("a"), headers=auth("alice")))
        )
        worker.start()
        assert held.entered.wait(10)
        refused = client.post("/v1/jobs", json=job_body("late"), headers=auth("alice"))
        assert client.get("/v1/backends", headers=auth("alice")).status_code == 200  # reads still served
        held.release.set()
        worker.join(10)
        assert refused.status_code == 429 and "200 ms behind" in refused.json()["detail"]
        assert first["r"].status_code == 202


@pytest.mark.parametrize("value", [0, "x"])
def test_the_overload_bounds_are_checked_in_the_config(value):
    from qhybrid.errors import InputError
    from qhybrid.gateway.config import parse_config

    for key in ("max_admissions_in_flight", "max_event_loop_lag_ms"):
        with pytest.raises(InputError, match=f"queue.{key}"):
            parse_config(base_config(queue={key: value}))
