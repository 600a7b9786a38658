"""A shielded child's location never appears in any response, whatever route or agency asks.

A shielded child (security label R) with a carer and a contact is stored by the owning agency;
then every GET route of the app (from the route map), every search parameter of every type,
includes, revincludes, history and paging links are called as every other agency, and every
response body is searched for the seeded location values.
"""
from __future__ import annotations

import re
from typing import Any

from flask import Flask

from gateway.security.context import Caller, acting_as
from tests.conftest import client_as, make_patient

R_LABEL = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
SECRETS = ("Quarry Refuge", "NR99 7QX", "07700 900777", "Refuge Town")
OWNER = "youth-support"


def _seed(app: Flask) -> dict[str, str]:
    services = app.extensions["wraparound"]
    child = make_patient(nhs="9434765870", family="Shielded", given="Kit",
                         meta={"security": [R_LABEL]},
                         address=[{"line": ["4 Quarry Refuge"], "city": "Refuge Town",
                                   "postalCode": "NR99 7QX"}],
                         telecom=[{"system": "phone", "value": "07700 900777"}],
                         contact=[{"name": {"family": "Carer"},
                                   "address": {"line": ["4 Quarry Refuge"],
                                               "postalCode": "NR99 7QX"}}])
    with acting_as(Caller.internal(OWNER)):
        patient = services.fhir.create("Patient", child).stored
        ref = {"reference": f"Patient/{patient.res_id}"}
        services.fhir.create("Encounter", {
            "resourceType": "Encounter", "status": "finished", "meta": {"security": [R_LABEL]},
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "HH"},
            "subject": ref, "location": [{"location": {"display": "4 Quarry Refuge, NR99 7QX"}}]})
        services.fhir.create("Observation", {
            "resourceType": "Observation", "status": "final", "meta": {"security": [R_LABEL]},
            "code": {"text": "NEET status"}, "subject": ref,
            "valueString": "Living at Quarry Refuge"})
    return {"Patient": patient.res_id}


def _check(resp: Any, where: str) -> None:
    body = resp.get_data(as_text=True)
    for secret in SECRETS:
        assert secret not in body, f"{where} revealed shielded location data"


def test_no_route_reveals_the_location(app: Flask) -> None:
    ids = _seed(app)
    registry = app.extensions["wraparound"].registry
    agencies = [a for a in app.extensions["wraparound"].policy.agencies if a != OWNER]
    paths: list[str] = []
    for rtype in registry.types():
        paths.append(f"/fhir/{rtype.name}")
        paths.append(f"/fhir/{rtype.name}/_history")
        for pname, param in rtype.params.items():
            if param.type == "string":
                paths.append(f"/fhir/{rtype.name}?{pname}=NR99")
                paths.append(f"/fhir/{rtype.name}?{pname}:contains=quarry")
            elif param.type in ("token", "uri"):
                paths.append(f"/fhir/{rtype.name}?{pname}=07700 900777")
            elif param.type == "reference":
                paths.append(f"/fhir/{rtype.name}?{pname}={ids['Patient']}"
                             f"&_include={rtype.name}:{pname}")
        paths.append(f"/fhir/{rtype.name}?_count=1")
    pid = ids["Patient"]
    paths += [f"/fhir/Patient/{pid}", f"/fhir/Patient/{pid}/_history",
              f"/fhir/Patient/{pid}/_history/1", "/fhir/_history",
              (f"/fhir/Patient?_id={pid}&_revinclude=Encounter:patient"
               "&_revinclude=Observation:patient")]
    for rule in app.url_map.iter_rules():
        if "GET" in (rule.methods or ()) and "<" not in rule.rule:
            paths.append(rule.rule)
    for agency in agencies:
        client = client_as(app, agency)
        for path in paths:
            resp = client.get(path)
            _check(resp, f"{agency} GET {path}")
            body = resp.get_json(silent=True) or {}
            for link in body.get("link", []) if isinstance(body, dict) else []:
                if link.get("relation") == "next":
                    nxt = re.sub(r"^https?://[^/]+", "", link["url"])
                    _check(client.get(nxt), f"{agency} GET {nxt}")
    # the owner sees it, so the check above could have failed
    owner = client_as(app, OWNER)
    assert SECRETS[1] in owner.get(f"/fhir/Patient/{pid}").get_data(as_text=True)
