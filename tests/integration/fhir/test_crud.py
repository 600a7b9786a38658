"""Create, read, vread, update, delete and history, on SQLite and PostgreSQL."""
from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import FHIR_JSON, FhirActions, make_patient


def test_create_assigns_id_version_and_headers(fhir: FhirActions) -> None:
    resp = fhir.create(make_patient())
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert resp.headers["ETag"] == 'W/"1"'
    assert resp.headers["Location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert resp.headers["Last-Modified"].endswith("GMT")
    assert resp.mimetype == FHIR_JSON


def test_create_ignores_client_id_and_server_meta(fhir: FhirActions) -> None:
    body = fhir.created(make_patient(id="client-chosen", meta={"versionId": "99",
                                                               "source": "urn:test"}))
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["source"] == "urn:test"


def test_read_returns_stored_bytes(fhir: FhirActions) -> None:
    created = fhir.created(make_patient())
    resp = fhir.client.get(f"/fhir/Patient/{created['id']}")
    assert resp.status_code == 200
    assert resp.get_json() == created
    assert resp.headers["ETag"] == 'W/"1"'


def test_if_none_match_gives_304(fhir: FhirActions) -> None:
    created = fhir.created(make_patient())
    resp = fhir.client.get(f"/fhir/Patient/{created['id']}", headers={"If-None-Match": 'W/"1"'})
    assert resp.status_code == 304


def test_update_versions_and_vread(fhir: FhirActions) -> None:
    created = fhir.created(make_patient())
    changed = dict(created, gender="male")
    resp = fhir.put(changed)
    assert resp.status_code == 200
    assert resp.get_json()["meta"]["versionId"] == "2"
    assert resp.headers["ETag"] == 'W/"2"'
    v1 = fhir.client.get(f"/fhir/Patient/{created['id']}/_history/1").get_json()
    v2 = fhir.client.get(f"/fhir/Patient/{created['id']}/_history/2").get_json()
    assert (v1["gender"], v2["gender"]) == ("female", "male")
    assert fhir.client.get(f"/fhir/Patient/{created['id']}/_history/3").status_code == 404


def test_update_with_same_content_makes_no_new_version(fhir: FhirActions) -> None:
    created = fhir.created(make_patient())
    resp = fhir.put(created)
    assert resp.status_code == 200
    assert resp.get_json()["meta"]["versionId"] == "1"


def test_update_creates_with_client_id(fhir: FhirActions) -> None:
    resp = fhir.put(make_patient(id="sc-C0001"))
    assert resp.status_code == 201
    assert resp.get_json()["id"] == "sc-C0001"
    assert resp.headers["Location"].endswith("/Patient/sc-C0001/_history/1")


@pytest.mark.parametrize(
    ("if_match", "status"),
    [pytest.param('W/"1"', 200, id="current"), pytest.param('W/"7"', 412, id="stale"),
     pytest.param('"1"', 200, id="strong-form"), pytest.param("garbage", 400, id="malformed")],
)
def test_if_match(fhir: FhirActions, if_match: str, status: int) -> None:
    created = fhir.created(make_patient())
    resp = fhir.put(dict(created, gender="male"), **{"If-Match": if_match})
    assert resp.status_code == status
    if status != 200:
        assert resp.get_json()["resourceType"] == "OperationOutcome"


def test_if_match_on_missing_resource_is_412(fhir: FhirActions) -> None:
    resp = fhir.put(make_patient(id="nobody"), **{"If-Match": 'W/"1"'})
    assert resp.status_code == 412


def test_delete_is_soft_and_history_kept(fhir: FhirActions) -> None:
    created = fhir.created(make_patient())
    rid = created["id"]
    assert fhir.client.delete(f"/fhir/Patient/{rid}").status_code == 200
    gone = fhir.client.get(f"/fhir/Patient/{rid}")
    assert gone.status_code == 410
    assert gone.get_json()["issue"][0]["code"] == "deleted"
    assert fhir.client.get(f"/fhir/Patient/{rid}/_history/1").status_code == 200
    assert fhir.client.get(f"/fhir/Patient/{rid}/_history/2").status_code == 410
    history = fhir.client.get(f"/fhir/Patient/{rid}/_history").get_json()
    assert history["total"] == 2
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]
    assert fhir.ids("Patient?_id=" + rid) == set()
    # deleting again changes nothing; re-creating by PUT continues the version sequence
    assert fhir.client.delete(f"/fhir/Patient/{rid}").status_code == 200
    resp = fhir.put(dict(created, id=rid))
    assert resp.status_code == 201
    assert resp.get_json()["meta"]["versionId"] == "3"


def test_delete_unknown_is_404(fhir: FhirActions) -> None:
    assert fhir.client.delete("/fhir/Patient/never-was").status_code == 404


def test_type_and_system_history(fhir: FhirActions) -> None:
    a = fhir.created(make_patient())
    fhir.put(dict(a, gender="male"))
    fhir.created({"resourceType": "Flag", "status": "active", "code": {"text": "CP plan"},
                  "subject": {"reference": f"Patient/{a['id']}"}})
    patient_history = fhir.client.get("/fhir/Patient/_history").get_json()
    assert patient_history["type"] == "history"
    assert patient_history["total"] == 2
    system = fhir.client.get("/fhir/_history").get_json()
    assert system["total"] == 3
    assert system["entry"][0]["fullUrl"].split("/fhir/")[1].startswith("Flag/")


def test_history_paging_is_pinned_against_new_writes(fhir: FhirActions) -> None:
    created = fhir.created(make_patient())
    for gender in ("male", "other", "unknown", "female"):
        created = fhir.put(dict(created, gender=gender)).get_json()
    first = fhir.client.get(f"/fhir/Patient/{created['id']}/_history?_count=2").get_json()
    fhir.put(dict(created, gender="male"))  # a new version arrives while paging
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = fhir.client.get(next_url.split("localhost")[1]).get_json()
    versions = [e["response"]["etag"] for e in first["entry"] + second["entry"]]
    assert versions == ['W/"5"', 'W/"4"', 'W/"3"', 'W/"2"']


def test_failed_write_leaves_no_rows(fhir: FhirActions, db_url: str) -> None:
    bad = make_patient(gender="robot")
    assert fhir.create(bad).status_code in (400, 422)
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        for table in ("resources", "resource_history", "idx_token", "idx_string", "idx_date"):
            assert conn.execute(sa.text(
                f"SELECT count(*) FROM {table} WHERE res_type <> 'AuditEvent'")).scalar_one() == 0
    engine.dispose()


def _row_counts(db_url: str) -> dict[str, Any]:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        out = {t: conn.execute(sa.text(
            f"SELECT count(*) FROM {t} WHERE res_type <> 'AuditEvent'")).scalar_one()
               for t in ("resources", "resource_history", "idx_token", "idx_reference")}
    engine.dispose()
    return out


def test_index_rows_follow_updates(fhir: FhirActions, db_url: str) -> None:
    created = fhir.created(make_patient(nhs="9000000009"))
    fhir.put(dict(created, identifier=[{"system": "urn:x", "value": "a"},
                                       {"system": "urn:x", "value": "b"}]))
    assert fhir.ids("Patient?identifier=9000000009") == set()
    assert fhir.ids("Patient?identifier=urn:x|b") == {created["id"]}
    counts = _row_counts(db_url)
    assert counts["resources"] == 1
    assert counts["resource_history"] == 2
