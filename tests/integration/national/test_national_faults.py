"""Every way a national call fails becomes an OperationOutcome with the right status, in time."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway import create_app
from gateway.config import Settings
from tests.conftest import bearer, free_port
from tests.integration.national.conftest import CALL_TIMEOUT, NHS

Inject = Callable[..., dict[str, Any]]
PDS_READ = "getPatientDetailsByNHSNumber-v1-0"


@pytest.mark.parametrize(("fault", "status", "issue_code", "service_code"), [
    ({"kind": "http_error", "status": 500}, 502, "transient", None),
    ({"kind": "http_error", "status": 503}, 502, "transient", None),
    ({"kind": "malformed"}, 502, "structure", None),
    ({"kind": "hostile", "variant": "billion_laughs"}, 502, "security", None),
    ({"kind": "hostile", "variant": "xxe_file"}, 502, "security", None),
    ({"kind": "reset"}, 502, "transient", None),
    ({"kind": "soap_fault", "code": "2200"}, 400, "invalid", "2200"),
    ({"kind": "soap_fault", "code": "1000"}, 400, "invalid", "1000"),
    ({"kind": "soap_fault", "code": "9000", "fault_code": "Server"}, 422, "processing", None),
], ids=lambda v: v if isinstance(v, (int, str)) or v is None else
    v["kind"] + str(v.get("status", v.get("code", v.get("variant", "")))))
def test_pds_faults_become_outcomes(client: FlaskClient, inject: Inject, child: dict[str, Any],
                                    fault: dict[str, Any], status: int, issue_code: str,
                                    service_code: str | None) -> None:
    inject(service="pds", operation=PDS_READ, **fault)
    resp = client.get(f"/national/pds/Patient/{child['nhs_number']}")
    assert resp.status_code == status
    assert resp.mimetype == "application/fhir+json"
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert issue["code"] == issue_code
    if service_code:
        assert issue["details"]["coding"][0]["code"] == service_code
    assert child["nhs_number"] not in resp.get_data(as_text=True)


def test_latency_below_the_timeout_still_answers(client: FlaskClient, inject: Inject,
                                                 child: dict[str, Any]) -> None:
    inject(service="pds", operation=PDS_READ, kind="latency", seconds=0.3)
    assert client.get(f"/national/pds/Patient/{child['nhs_number']}").status_code == 200


def test_a_hanging_service_is_504_within_the_timeout(client: FlaskClient, inject: Inject,
                                                     child: dict[str, Any]) -> None:
    inject(service="pds", operation=PDS_READ, kind="hang", seconds=30)
    started = time.monotonic()
    resp = client.get(f"/national/pds/Patient/{child['nhs_number']}")
    elapsed = time.monotonic() - started
    assert resp.status_code == 504
    assert resp.get_json()["issue"][0]["code"] == "timeout"
    assert elapsed < CALL_TIMEOUT + 1.0


def test_a_hanging_cpis_is_504(client: FlaskClient, inject: Inject,
                               seed: dict[str, Any]) -> None:
    inject(service="cpis", operation="queryChildProtection", kind="hang", seconds=30)
    plan = seed["cpis"]["plans"][0]
    started = time.monotonic()
    resp = client.get(f"/national/cpis/Flag?nhs-number={plan['nhs_number']}")
    assert resp.status_code == 504
    assert time.monotonic() - started < CALL_TIMEOUT + 1.0


@pytest.mark.parametrize(("fault", "status", "issue_code"), [
    ({"kind": "soap_fault", "code": "CPIS-VALIDATION"}, 400, "invalid"),
    ({"kind": "soap_fault", "code": "CPIS-NOT-FOUND"}, 404, "not-found"),
    ({"kind": "http_error", "status": 500}, 502, "transient"),
    ({"kind": "malformed"}, 502, "structure"),
], ids=["validation", "not-found", "http500", "malformed"])
def test_cpis_faults_become_outcomes(client: FlaskClient, inject: Inject, seed: dict[str, Any],
                                     fault: dict[str, Any], status: int,
                                     issue_code: str) -> None:
    inject(service="cpis", operation="queryChildProtection", **fault)
    plan = seed["cpis"]["plans"][0]
    resp = client.get(f"/national/cpis/Flag?patient.identifier={NHS}|{plan['nhs_number']}")
    assert resp.status_code == status
    assert resp.get_json()["issue"][0]["code"] == issue_code


def test_an_unreachable_service_is_502(settings: Settings, child: dict[str, Any]) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    app = create_app(settings.replace(pds_url=f"{down}/spine/pds"))
    try:
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = bearer(app)
        resp = client.get(f"/national/pds/Patient/{child['nhs_number']}")
        assert resp.status_code == 502
        assert resp.get_json()["issue"][0]["code"] == "transient"
    finally:
        app.extensions["wraparound"].audit.flush()
        app.extensions["wraparound"].store.dispose()
