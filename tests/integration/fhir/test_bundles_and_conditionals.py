"""Transactions, batches, conditional create and conditional update."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tests.conftest import FHIR_JSON, FhirActions, make_patient

NHS = "https://fhir.nhs.uk/Id/nhs-number"
CHILD = "urn:uuid:4c1b3f5e-0000-4000-8000-000000000001"


def _post_bundle(fhir: FhirActions, bundle: dict[str, Any]) -> Any:
    return fhir.client.post("/fhir", json=bundle, headers={"Content-Type": FHIR_JSON})


def _cp_bundle(flag_status: str = "active") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": CHILD, "resource": make_patient(),
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:4c1b3f5e-0000-4000-8000-000000000002",
         "resource": {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                      "subject": {"reference": CHILD}},
         "request": {"method": "POST", "url": "CarePlan"}},
        {"resource": {"resourceType": "Flag", "status": flag_status,
                      "code": {"text": "Child protection plan"},
                      "subject": {"reference": CHILD}},
         "request": {"method": "POST", "url": "Flag"}},
    ]}


def test_transaction_rewrites_urn_references(fhir: FhirActions) -> None:
    resp = _post_bundle(fhir, _cp_bundle())
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created"] * 3
    patient_id = body["entry"][0]["response"]["location"].split("/")[1]
    assert body["entry"][2]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
    assert fhir.ids(f"CarePlan?patient={patient_id}")


def _count(db_url: str, table: str) -> int:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        n = int(conn.execute(sa.text(
            f"SELECT count(*) FROM {table} WHERE res_type <> 'AuditEvent'")).scalar_one())
    engine.dispose()
    return n


def test_transaction_with_one_bad_entry_stores_nothing(fhir: FhirActions, db_url: str) -> None:
    resp = _post_bundle(fhir, _cp_bundle(flag_status="sort-of"))
    assert resp.status_code in (400, 422)
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Bundle.entry[2]" in outcome["issue"][0]["diagnostics"]
    for table in ("resources", "resource_history", "idx_reference"):
        assert _count(db_url, table) == 0


def test_transaction_failing_inside_rolls_back(fhir: FhirActions, db_url: str) -> None:
    existing = fhir.created(make_patient())
    bundle = _cp_bundle()
    bundle["entry"].append({"resource": dict(existing, gender="male"),
                            "request": {"method": "PUT", "url": f"Patient/{existing['id']}",
                                        "ifMatch": 'W/"9"'}})
    resp = _post_bundle(fhir, bundle)
    assert resp.status_code == 412
    assert _count(db_url, "resources") == 1
    assert fhir.client.get(f"/fhir/Patient/{existing['id']}").get_json()["gender"] == "female"


def test_transaction_conditional_entries(fhir: FhirActions) -> None:
    existing = fhir.created(make_patient())
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": CHILD, "resource": make_patient(),
         "request": {"method": "POST", "url": "Patient",
                     "ifNoneExist": f"identifier={NHS}|9000000009"}},
        {"resource": {"resourceType": "Flag", "status": "active", "code": {"text": "CP"},
                      "subject": {"reference": CHILD}},
         "request": {"method": "POST", "url": "Flag"}},
    ]}
    body = _post_bundle(fhir, bundle).get_json()
    assert body["entry"][0]["response"]["status"] == "200 OK"
    assert body["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{existing['id']}"
    assert len(fhir.ids("Patient")) == 1


def test_transaction_order_delete_before_create(fhir: FhirActions) -> None:
    old = fhir.created(make_patient())
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": make_patient(nhs="9434765919"), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": f"Patient/{old['id']}"}},
        {"request": {"method": "GET", "url": f"Patient/{old['id']}"}},
    ]}
    resp = _post_bundle(fhir, bundle)
    # GET runs last, after the DELETE, so the transaction fails as a whole
    assert resp.status_code == 404
    assert fhir.client.get(f"/fhir/Patient/{old['id']}").status_code == 200


def test_batch_entries_are_independent(fhir: FhirActions) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": make_patient(), "request": {"method": "POST", "url": "Patient"}},
        {"resource": make_patient(gender="robot"), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {"request": {"method": "GET", "url": "Patient?gender=female"}},
    ]}
    resp = _post_bundle(fhir, bundle)
    assert resp.status_code == 200
    entries = resp.get_json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] in ("400", "422")
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["response"]["status"] == "404"
    assert entries[3]["resource"]["total"] == 1


def test_bundle_shape_errors(fhir: FhirActions) -> None:
    for bundle in ({"resourceType": "Bundle", "type": "collection"},
                   {"resourceType": "Patient"},
                   {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {}}]},
                   {"resourceType": "Bundle", "type": "transaction",
                    "entry": [{"request": {"method": "POST", "url": "Patient"}}]}):
        resp = _post_bundle(fhir, bundle)
        assert resp.status_code == 400, bundle
        assert resp.get_json()["resourceType"] == "OperationOutcome"


def test_conditional_create(fhir: FhirActions) -> None:
    header = {"If-None-Exist": f"identifier={NHS}|9000000009"}
    first = fhir.create(make_patient(), **header)
    again = fhir.create(make_patient(), **header)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    fhir.created(make_patient())  # a second child with the same number (a data error)
    assert fhir.create(make_patient(), **header).status_code == 412


def test_conditional_update(fhir: FhirActions) -> None:
    url = f"/fhir/Patient?identifier={NHS}|9000000009"
    headers = {"Content-Type": FHIR_JSON}
    created = fhir.client.put(url, json=make_patient(), headers=headers)
    assert created.status_code == 201
    updated = fhir.client.put(url, json=make_patient(gender="male"), headers=headers)
    assert updated.status_code == 200
    assert updated.get_json()["id"] == created.get_json()["id"]
    assert updated.get_json()["meta"]["versionId"] == "2"
    wrong_id = fhir.client.put(url, json=make_patient(id="other"), headers=headers)
    assert wrong_id.status_code == 400
    fhir.created(make_patient())
    assert fhir.client.put(url, json=make_patient(), headers=headers).status_code == 412
