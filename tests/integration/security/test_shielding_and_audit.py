"""Shielded children, break-the-glass, and the audit trail."""
from __future__ import annotations

import base64
from typing import Any

from flask import Flask

from tests.conftest import FHIR_JSON, FhirActions, client_as, make_patient

HOME = "17 Hidden Lane"
POSTCODE = "LS99 9ZZ"
R_LABEL = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}


def _shielded(fhir: FhirActions) -> dict[str, Any]:
    child = make_patient(nhs="9434765919", family="Hidden", given="Robin",
                         meta={"security": [R_LABEL]},
                         address=[{"line": [HOME], "city": "Leeds", "postalCode": POSTCODE}],
                         telecom=[{"system": "phone", "value": "07700 900123"}])
    return fhir.created(child)


def test_shielded_child_is_minimal_to_other_agencies(app: Flask, fhir: FhirActions) -> None:
    child = _shielded(fhir)
    health = client_as(app, "health")
    responses = [
        health.get(f"/fhir/Patient/{child['id']}"),
        health.get("/fhir/Patient?family=hidden"),
        health.get(f"/fhir/Patient?_id={child['id']}"),
        health.get(f"/fhir/Patient/{child['id']}/_history"),
        health.get(f"/fhir/Patient/{child['id']}/_history/1"),
        health.get("/fhir/Patient/_history"),
    ]
    for resp in responses:
        assert resp.status_code == 200
        text = resp.get_data(as_text=True)
        assert HOME not in text and POSTCODE not in text and "07700" not in text
    minimal = responses[0].get_json()
    assert minimal["name"][0]["family"] == "Hidden"
    assert any(s.get("code") == "REDACTED" for s in minimal["meta"]["security"])
    # searching by location never matches the shielded child
    assert health.get("/fhir/Patient?address-postalcode=LS99").get_json()["total"] == 0
    assert health.get("/fhir/Patient?address=hidden").get_json()["total"] == 0
    # the owning agency sees everything
    own = fhir.client.get(f"/fhir/Patient/{child['id']}").get_json()
    assert own["address"][0]["postalCode"] == POSTCODE


def test_break_the_glass(app: Flask, fhir: FhirActions) -> None:
    child = _shielded(fhir)
    reason = "Emergency department: child presenting with injuries"
    health = client_as(app, "health", **{"X-Break-Glass-Reason": reason})
    resp = health.get(f"/fhir/Patient/{child['id']}")
    assert resp.status_code == 200
    assert resp.get_json()["address"][0]["postalCode"] == POSTCODE
    school = client_as(app, "education", **{"X-Break-Glass-Reason": reason})
    assert school.get(f"/fhir/Patient/{child['id']}").status_code == 403
    app.extensions["wraparound"].audit.flush()
    auditor = client_as(app, "auditor")
    events = auditor.get(f"/fhir/AuditEvent?entity=Patient/{child['id']}").get_json()
    btg = [e["resource"] for e in events["entry"]
           if e["resource"].get("purposeOfEvent")]
    assert btg and btg[0]["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
    alerts = auditor.get(
        "/fhir/AuditEvent?subtype=https://wraparound.example.org/fhir/CodeSystem/"
        "audit-event-subtype|break-the-glass").get_json()
    assert alerts["total"] == 1
    assert "entity" not in alerts["entry"][0]["resource"] or all(
        "what" not in e for e in alerts["entry"][0]["resource"]["entity"])


def test_who_looked_at_this_child(app: Flask, fhir: FhirActions) -> None:
    child = fhir.created(make_patient())
    health = client_as(app, "health")
    health.get(f"/fhir/Patient/{child['id']}")
    health.get("/fhir/Patient?family=smith")
    app.extensions["wraparound"].audit.flush()
    auditor = client_as(app, "auditor")
    events = auditor.get(f"/fhir/AuditEvent?entity=Patient/{child['id']}&_count=50").get_json()
    kinds = {(e["resource"]["subtype"][0]["code"],
              e["resource"]["agent"][0]["who"]["display"]) for e in events["entry"]}
    assert ("create", "agency social-care") in kinds
    assert ("read", "agency health") in kinds
    searches = auditor.get("/fhir/AuditEvent?subtype=search").get_json()
    queries = [base64.b64decode(ent["query"]).decode()
               for e in searches["entry"] for ent in e["resource"].get("entity", [])
               if "query" in ent]
    assert "family=smith" in queries
    # only the auditor reads audit, and nobody edits it
    assert health.get("/fhir/AuditEvent").get_json()["total"] == 0
    event = events["entry"][0]["resource"]
    assert fhir.client.put(f"/fhir/AuditEvent/{event['id']}", json=event,
                           headers={"Content-Type": FHIR_JSON}).status_code in (403, 404)
    assert fhir.client.delete(f"/fhir/AuditEvent/{event['id']}").status_code in (403, 404)
    assert auditor.delete(f"/fhir/AuditEvent/{event['id']}").status_code == 403


def test_write_is_audited_in_its_transaction(app: Flask, fhir: FhirActions) -> None:
    child = fhir.created(make_patient())
    store = app.extensions["wraparound"].store
    # no flush: a write's audit is committed with the write itself
    ids = store.read(lambda s: s.search_ids(
        app.extensions["wraparound"].fhir.parse_query(
            "AuditEvent", [("entity", f"Patient/{child['id']}")]), limit=10))
    assert len(ids) == 1


def test_denied_access_is_audited(app: Flask, anonymous: Any) -> None:
    anonymous.get("/fhir/Patient")
    app.extensions["wraparound"].audit.flush()
    auditor = client_as(app, "auditor")
    events = auditor.get("/fhir/AuditEvent?outcome=4").get_json()
    assert any(e["resource"]["agent"][0]["who"]["display"] == "unauthenticated caller"
               for e in events["entry"])


def test_audit_events_are_valid_fhir(app: Flask, fhir: FhirActions) -> None:
    from gateway.fhir.validation import validate_resource

    fhir.created(make_patient())
    fhir.client.get("/fhir/Patient?name=smith")
    app.extensions["wraparound"].audit.flush()
    auditor = client_as(app, "auditor")
    for entry in auditor.get("/fhir/AuditEvent").get_json()["entry"]:
        errors = [i for i in validate_resource(entry["resource"]) if i.severity == "error"]
        assert errors == []


def test_audit_patient_parameter_is_answered_from_entity_rows(app: Flask,
                                                              fhir: FhirActions) -> None:
    child = fhir.created(make_patient())
    other = fhir.created(make_patient(nhs="9434765870", family="Other"))
    flag = fhir.created({"resourceType": "Flag", "status": "active",
                         "code": {"text": "note"}, "subject": {"reference": f"Patient/{child['id']}"}})
    health = client_as(app, "health")
    for _ in range(2):
        health.get(f"/fhir/Patient/{child['id']}")
    health.get(f"/fhir/Patient/{other['id']}")
    health.get(f"/fhir/Flag/{flag['id']}")
    app.extensions["wraparound"].audit.flush()
    auditor = client_as(app, "auditor")

    def ids(query: str) -> set[str]:
        bundle = auditor.get(f"/fhir/AuditEvent?{query}&_count=100").get_json()
        return {e["resource"]["id"] for e in bundle.get("entry", [])
                if e["search"]["mode"] == "match"}

    by_entity = ids(f"entity=Patient/{child['id']}")
    assert len(by_entity) >= 3  # its creation and two reads
    assert ids(f"patient=Patient/{child['id']}") == by_entity
    assert ids(f"patient={child['id']}") == by_entity
    assert ids(f"patient={child['id']},{other['id']}") == by_entity | ids(
        f"entity=Patient/{other['id']}")
    # a Flag is an entity but not a patient
    flag_events = ids(f"entity=Flag/{flag['id']}")
    assert flag_events and not flag_events & ids(f"patient={flag['id']}")
    everything = ids("_sort=date")
    with_patient = ids("patient:missing=false")
    assert with_patient and with_patient == everything - ids("patient:missing=true")
    assert not flag_events & with_patient - by_entity
    # _include and _revinclude through the derived parameter (in the store: the auditor may
    # read AuditEvents only, so the API leaves every included Patient out)
    from gateway.fhir.search import Include

    store = app.extensions["wraparound"].store
    events = sorted(by_entity | flag_events)

    def included(includes: list[Include], revincludes: list[Include], res_type: str,
                 page: list[str]) -> set[tuple[str, str]]:
        found = store.read(lambda tx: tx.includes(res_type, page, includes, revincludes, 100))
        return {(r.res_type, r.res_id) for r in found}

    assert included([Include("AuditEvent", "patient", None)], [], "AuditEvent", events) == {
        ("Patient", child["id"])}
    assert included([Include("AuditEvent", "entity", None)], [], "AuditEvent", events) == {
        ("Patient", child["id"]), ("Flag", flag["id"])}
    assert included([Include("AuditEvent", "patient", "Flag")], [], "AuditEvent", events) == set()
    assert included([], [Include("AuditEvent", "patient", None)], "Patient", [child["id"]]) == {
        ("AuditEvent", e) for e in by_entity}
    assert included([], [Include("AuditEvent", "patient", None)], "Flag", [flag["id"]]) == set()
    assert included([], [Include("AuditEvent", "entity", None)], "Flag", [flag["id"]]) == {
        ("AuditEvent", e) for e in flag_events}
