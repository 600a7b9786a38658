"""A golden Patient holds every identifier, the names most sources agree on, and links."""
from __future__ import annotations

from typing import Any

from gateway.identity.features import extract
from gateway.identity.golden import Member, compose, retired
from vocab import systems

VERIFIED = {"url": systems.UKCORE_NHS_NUMBER_VERIFICATION_EXTENSION,
            "valueCodeableConcept": {"coding": [{"code": "01"}]}}


def member(pid: str, source: str, updated: str, **fields: Any) -> Member:
    extra = fields.pop("identifier", [])
    patient = {"resourceType": "Patient", "id": pid,
               "meta": {"source": f"urn:wraparound:source:{source}"},
               "identifier": [{"system": systems.local_id_system(source), "value": pid.upper()},
                              *extra],
               **fields}
    return Member(pid, patient, extract(patient), updated)


HEALTH = member("ch1", "child-health", "2026-01-01T00:00:00.000Z",
                identifier=[{"system": systems.NHS_NUMBER, "value": "9990128383",
                             "extension": [VERIFIED]}],
                name=[{"use": "official", "family": "Robinson", "given": ["Ella"]}],
                gender="female", birthDate="2015-09-13",
                address=[{"line": ["1 Old Road"], "postalCode": "NR1 1AA"}])
SCHOOL = member("sch1", "school", "2026-05-01T00:00:00.000Z",
                identifier=[{"system": systems.UPN, "value": "X926223319001"}],
                name=[{"use": "official", "family": "Ward", "given": ["Ella"]},
                      {"use": "old", "family": "Robinson", "given": ["Ella"]}],
                gender="female", birthDate="2015-03-09",
                address=[{"line": ["37 Wensum View"], "postalCode": "NR31 2UF"}])
YJ = member("yj1", "youth-justice", "2026-02-01T00:00:00.000Z",
            name=[{"use": "official", "family": "ROBINSON", "given": ["Ella"]},
                  {"use": "nickname", "given": ["Elle"]}],
            gender="female", birthDate="2015-09-13")


def test_compose() -> None:
    golden = compose("g1", [SCHOOL, YJ, HEALTH])
    assert golden["id"] == "g1" and golden["active"] is True
    assert golden["meta"] == {"source": "urn:wraparound:identity"}
    systems_seen = [i["system"] for i in golden["identifier"]]
    assert systems_seen[:3] == [systems.GOLDEN_ID, systems.NHS_NUMBER, systems.UPN]
    assert golden["identifier"][1]["extension"][0]["valueCodeableConcept"]["coding"][0][
        "code"] == "01"
    assert "extension" not in golden["identifier"][2]
    assert len([s for s in systems_seen if "/Id/local/" in s]) == 3
    assert golden["name"][0] == {"use": "official", "family": "Robinson", "given": ["Ella"]}
    assert {"use": "nickname", "given": ["Elle"]} in golden["name"]
    assert {"family": "Ward", "given": ["Ella"]} in golden["name"]
    assert golden["birthDate"] == "2015-09-13" and golden["gender"] == "female"
    assert golden["address"][0]["postalCode"] == "NR31 2UF"  # the most recently updated
    assert [link["other"]["reference"] for link in golden["link"]] == [
        "Patient/ch1", "Patient/sch1", "Patient/yj1"]
    assert {link["type"] for link in golden["link"]} == {"seealso"}


def test_restricted_child_has_no_address_in_the_golden_record() -> None:
    label = {"system": systems.CONFIDENTIALITY, "code": "R"}
    shielded = member("ys1", "youth-support", "2026-06-01T00:00:00.000Z",
                      meta={"source": "urn:wraparound:source:youth-support",
                            "security": [label]},
                      name=[{"family": "Robinson", "given": ["Ella"]}],
                      address=[{"line": ["Refuge"], "postalCode": "NR99 7QX"}])
    golden = compose("g1", [HEALTH, shielded])
    assert golden["meta"]["security"] == [label]
    assert "address" not in golden


def test_retired() -> None:
    old = retired("g2", "g1", {"meta": {"security": [{"code": "R"}]}})
    assert old["active"] is False
    assert old["link"] == [{"other": {"reference": "Patient/g1"}, "type": "replaced-by"}]
    assert old["meta"]["security"] == [{"code": "R"}]
    assert "link" not in retired("g3", None, None)
