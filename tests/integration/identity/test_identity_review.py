"""The review queue, split and merge: a person's decision wins over the algorithm, survives a
rebuild, leaves history, and is audited."""
from __future__ import annotations

from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.identity.service import as_gateway
from gateway.security.context import Caller, acting_as
from tests.conftest import client_as
from tests.integration.identity.conftest import golden_of, identity_of

LOCAL = "https://wraparound.example.org/fhir/Id/local/{}/record"


def child(source: str, record: str, given: str, family: str, birth: str, postcode: str,
          line: str, gender: str = "female", **extra: Any) -> dict[str, Any]:
    """Return a source Patient shaped like the mapped ones."""
    return {"resourceType": "Patient",
            "meta": {"source": f"urn:wraparound:source:{source}"},
            "identifier": [{"system": LOCAL.format(source), "value": record}, *extra.pop(
                "identifier", [])],
            "name": [{"use": "official", "family": family, "given": [given]}],
            "gender": gender, "birthDate": birth,
            "address": [{"line": [line], "postalCode": postcode}], **extra}


def put(app: Flask, agency: str, patient: dict[str, Any]) -> str:
    """Store a source Patient as its agency and resolve it; return its id."""
    services = app.extensions["wraparound"]
    with acting_as(Caller.internal(agency)):
        stored = services.fhir.create("Patient", patient).stored
    identity_of(app).resolve(stored.res_id)
    return str(stored.res_id)


def rebuild(app: Flask) -> None:
    with as_gateway():
        identity_of(app).rebuild()


def open_items(client: FlaskClient) -> list[dict[str, Any]]:
    resp = client.get("/identity/review")
    assert resp.status_code == 200, resp.get_json()
    items: list[dict[str, Any]] = resp.get_json()["items"]
    return items


# Same child after a change of surname and a move within the postcode sector: possible.
MIA_SC = ("social-care", "SC1", "Mia", "Carter", "2016-05-04", "NR2 4AB", "1 Elm Road")
MIA_SCHOOL = ("school", "P926401219900", "Mia", "Jenkins", "2016-05-04", "NR2 4ZZ", "9 Oak Lane")
# Same name and birthday, addresses far apart: probable, linked by the algorithm.
NOAH_SC = ("social-care", "SC2", "Noah", "Price", "2012-01-30", "NR1 1AA", "3 Ash Close")
NOAH_YJ = ("youth-justice", "YJ-1", "Noah", "Price", "2012-01-30", "PE30 1AA", "8 Bay Road")


def test_review_link_wins_and_survives_rebuild(app: Flask, client: FlaskClient) -> None:
    a = put(app, "social-care", child(*MIA_SC))
    b = put(app, "education", child(*MIA_SCHOOL))
    assert golden_of(app, a) != golden_of(app, b)
    items = open_items(client)
    assert len(items) == 1
    item = items[0]
    assert {item["source"], item["candidate"]} == {f"Patient/{a}", f"Patient/{b}"}
    assert item["grade"] == "possible" and item["levels"]["family"] == "disagree"
    assert "Carter" not in orjson.dumps(items).decode()  # references and levels, no names

    resp = client.post(f"/identity/review/{item['id']}",
                       json={"decision": "link", "reason": "same school records confirm"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "linked"
    assert golden_of(app, a) == golden_of(app, b)
    assert open_items(client) == []
    decided = client.get("/identity/review?status=linked").get_json()
    assert decided["total"] == 1 and decided["items"][0]["decider"].startswith("person:")
    again = client.post(f"/identity/review/{item['id']}", json={"decision": "link"})
    assert again.status_code == 409

    rebuild(app)
    assert golden_of(app, a) == golden_of(app, b)
    assert open_items(client) == []
    golden = golden_of(app, a)
    history = client.get(f"/identity/history?patient={golden}").get_json()
    assert "review-link" in {e["action"] for e in history["entries"]}
    links = client.get(f"/identity/links?patient={a}").get_json()["links"]
    assert {link["source"] for link in links} == {f"Patient/{a}", f"Patient/{b}"}

    services = app.extensions["wraparound"]
    services.audit.flush()
    with acting_as(Caller.internal("auditor")):
        events = services.fhir.search("AuditEvent", [("_count", "500")]).matches
    updates = [orjson.loads(e.content or "{}") for e in events]
    assert any(f"Patient/{golden}" in orjson.dumps(e).decode() and
               e["subtype"][0]["code"] == "update" for e in updates)


def test_keep_apart_and_split_beat_the_algorithm(app: Flask, client: FlaskClient) -> None:
    a = put(app, "social-care", child(*NOAH_SC, gender="male"))
    b = put(app, "youth-justice", child(*NOAH_YJ, gender="male"))
    first = golden_of(app, a)
    assert golden_of(app, b) == first  # probable: linked without a person

    resp = client.post("/identity/split", json={"patient": f"Patient/{b}",
                                                "reason": "different fathers named"})
    assert resp.status_code == 200, resp.get_json()
    assert golden_of(app, a) == first and golden_of(app, b) != first
    assert resp.get_json()["golden"] == f"Patient/{golden_of(app, b)}"
    rebuild(app)
    assert golden_of(app, a) != golden_of(app, b)
    identity_of(app).resolve(b)
    assert golden_of(app, a) != golden_of(app, b)
    actions = {e["action"] for e in client.get(f"/identity/history?patient={b}")
               .get_json()["entries"]}
    assert {"link", "split"} <= actions

    # Twins: another name, same everything else: possible at most, then kept apart for good.
    twin = put(app, "social-care", child("social-care", "SC3", "Oscar", "Price", "2012-01-30",
                                         "NR1 1AA", "3 Ash Close", gender="male"))
    items = [i for i in open_items(client) if f"Patient/{twin}" in (i["source"],
                                                                   i["candidate"])]
    assert items and items[0]["rule"] == "given-names-disagree"
    resp = client.post(f"/identity/review/{items[0]['id']}", json={"decision": "keep-apart"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "kept-apart"
    rebuild(app)
    assert golden_of(app, twin) not in (golden_of(app, a), golden_of(app, b))
    assert not [i for i in open_items(client) if f"Patient/{twin}" == i["source"]
                and i["candidate"] == items[0]["candidate"]]


def test_merge_retires_a_golden_patient(app: Flask, client: FlaskClient) -> None:
    a = put(app, "social-care", child(*NOAH_SC, gender="male"))
    c = put(app, "education", child("school", "D926401219901", "Ella", "Stone", "2014-02-02",
                                     "IP1 1AA", "5 Mill Lane"))
    keep, gone = golden_of(app, a), golden_of(app, c)
    assert keep != gone
    resp = client.post("/identity/merge", json={"from": f"Patient/{gone}",
                                                "into": f"Patient/{keep}"})
    assert resp.status_code == 200, resp.get_json()
    assert golden_of(app, c) == keep
    retired = client.get(f"/fhir/Patient/{gone}").get_json()
    assert retired["active"] is False
    assert retired["link"] == [{"other": {"reference": f"Patient/{keep}"}, "type": "replaced-by"}]
    merged = client.get(f"/fhir/Patient/{keep}").get_json()
    assert {link["other"]["reference"] for link in merged["link"]} == {
        f"Patient/{a}", f"Patient/{c}"}
    rebuild(app)
    assert golden_of(app, a) == golden_of(app, c) == keep
    assert client.post("/identity/merge", json={"from": f"Patient/{a}",
                                                "into": f"Patient/{keep}"}).status_code == 404


@pytest.mark.parametrize(("agency", "scopes", "method", "path", "status"), [
    ("education", ("system/*.cruds",), "GET", "/identity/review", 200),
    ("auditor", ("system/*.cruds",), "GET", "/identity/review", 403),
    ("social-care", ("system/Flag.rs",), "GET", "/identity/review", 403),
    ("social-care", ("system/Patient.rs",), "POST", "/identity/review/x", 403),
    ("auditor", ("system/*.cruds",), "POST", "/identity/split", 403),
    ("social-care", ("system/*.cruds",), "POST", "/identity/review/unknown", 404),
    ("social-care", ("system/*.cruds",), "GET", "/identity/review?status=maybe", 400),
    ("social-care", ("system/*.cruds",), "GET", "/identity/history", 400),
])
def test_who_may_review(app: Flask, agency: str, scopes: tuple[str, ...], method: str,
                        path: str, status: int) -> None:
    client = client_as(app, agency, scopes=scopes)
    resp = client.open(path, method=method, json={"decision": "link"})
    assert resp.status_code == status, resp.get_json()
