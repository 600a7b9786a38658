"""Time the strict validator against plain fhir.resources parsing, measured in the same run.

Run: ``.venv/bin/python bench/validation_speed.py [--number N]``. Prints, per resource type,
microseconds per call for ``validate_resource`` and for ``fhir.resources.R4B.<type>.model_validate``
and their ratio (below 1.0 means the strict validator is the faster of the two).
"""

from __future__ import annotations

import argparse
import copy
import functools
import timeit
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from gateway.fhir.validation import validate_resource

NHS = "https://fhir.nhs.uk/Id/nhs-number"
DIV = '<div xmlns="http://www.w3.org/1999/xhtml"><p>{}</p></div>'


def patient() -> dict[str, Any]:
    """Return a realistic synthetic child Patient."""
    return {
        "resourceType": "Patient",
        "id": "c0a8f2e4-1b7d-4c55-9a51-6d1f1e2b3c4d",
        "meta": {"versionId": "3", "lastUpdated": "2024-03-01T09:30:00Z",
                 "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"]},
        "text": {"status": "generated", "div": DIV.format("Synthetic child, born 2016")},
        "identifier": [
            {"system": NHS, "value": "9000000009", "extension": [{
                "url": "https://fhir.hl7.org.uk/StructureDefinition/"
                       "Extension-UKCore-NHSNumberVerificationStatus",
                "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/"
                              "UKCore-NHSNumberVerificationStatusEngland",
                    "code": "01", "display": "Number present and verified"}]}}]},
            {"system": "https://wraparound.example/Id/upn", "value": "A123456789012"},
        ],
        "active": True,
        "name": [{"use": "official", "family": "Example", "given": ["Sam", "Alex"]}],
        "telecom": [{"system": "phone", "value": "01632 960000", "use": "home"}],
        "gender": "female",
        "birthDate": "2016-04-12",
        "address": [{"use": "home", "line": ["1 Example Street"], "city": "Exampletown",
                     "postalCode": "EX1 1AA", "period": {"start": "2019-01-01"}}],
        "contact": [{
            "relationship": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}],
            "name": {"family": "Example", "given": ["Jo"]},
            "telecom": [{"system": "phone", "value": "07700 900000", "use": "mobile"}],
        }],
        "generalPractitioner": [{"reference": "Organization/gp-a81001"}],
        "managingOrganization": {"reference": "Organization/la-e09000001"},
    }


def observation() -> dict[str, Any]:
    """Return a realistic school-attendance Observation."""
    return {
        "resourceType": "Observation",
        "id": "att-2024-spring-0001",
        "meta": {"lastUpdated": "2024-04-02T16:00:00Z"},
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "social-history"}]}],
        "code": {"coding": [{"system": "https://wraparound.example/CodeSystem/education",
                             "code": "attendance-rate", "display": "Attendance rate"}],
                 "text": "School attendance"},
        "subject": {"reference": "Patient/c0a8f2e4-1b7d-4c55-9a51-6d1f1e2b3c4d"},
        "effectivePeriod": {"start": "2024-01-08", "end": "2024-03-28"},
        "issued": "2024-04-02T15:59:00Z",
        "performer": [{"reference": "Organization/school-100001", "display": "Example School"}],
        "valueQuantity": {"value": 87.5, "unit": "%", "system": "http://unitsofmeasure.org",
                          "code": "%"},
        "interpretation": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
            "code": "L"}]}],
        "note": [{"text": "Persistent absence threshold is 90%."}],
    }


def care_plan() -> dict[str, Any]:
    """Return a realistic child protection CarePlan."""
    return {
        "resourceType": "CarePlan",
        "id": "cpp-e09000001-000123",
        "meta": {"lastUpdated": "2024-02-15T11:00:00Z"},
        "text": {"status": "generated", "div": DIV.format("Child protection plan")},
        "identifier": [{"system": "https://wraparound.example/Id/cp-plan", "value": "000123"}],
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": "https://wraparound.example/CodeSystem/plan-type",
                                  "code": "child-protection"}]}],
        "title": "Child protection plan",
        "subject": {"reference": "Patient/c0a8f2e4-1b7d-4c55-9a51-6d1f1e2b3c4d"},
        "period": {"start": "2024-02-14"},
        "created": "2024-02-14T15:00:00Z",
        "author": {"reference": "Organization/la-e09000001"},
        "careTeam": [{"reference": "CareTeam/ctac-000123"}],
        "addresses": [{"reference": "Condition/need-000123"}],
        "goal": [{"reference": "Goal/goal-000123"}],
        "activity": [
            {"detail": {"kind": "Appointment", "code": {"text": "Core group meeting"},
                        "status": "scheduled",
                        "scheduledPeriod": {"start": "2024-03-01T10:00:00Z",
                                            "end": "2024-03-01T11:00:00Z"},
                        "performer": [{"reference": "Practitioner/sw-0042"}],
                        "description": "Monthly core group"}},
            {"detail": {"kind": "Task", "code": {"text": "Home visit"},
                        "status": "in-progress",
                        "scheduledTiming": {"repeat": {"frequency": 1, "period": 10,
                                                       "periodUnit": "d"}},
                        "performer": [{"reference": "Practitioner/sw-0042"}]}},
        ],
        "note": [{"time": "2024-02-15T10:55:00Z", "text": "Plan agreed at conference."}],
    }


def main() -> None:
    """Print the per-type timings and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=2000, help="calls per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements (best is kept)")
    args = parser.parse_args()
    print(f"{'type':<14}{'strict µs':>12}{'model_validate µs':>20}{'ratio':>8}")
    for make in (patient, observation, care_plan):
        resource = make()
        rtype = resource["resourceType"]
        model = get_fhir_model_class(rtype)
        issues = validate_resource(copy.deepcopy(resource), rtype)
        if [i for i in issues if i.severity == "error"]:
            raise SystemExit(f"{rtype} sample is not valid: {issues}")
        model.model_validate(resource)
        strict = min(timeit.repeat(functools.partial(validate_resource, resource, rtype),
                                   number=args.number, repeat=args.repeat)) / args.number
        plain = min(timeit.repeat(functools.partial(model.model_validate, resource),
                                  number=args.number, repeat=args.repeat)) / args.number
        print(f"{rtype:<14}{strict * 1e6:>12.1f}{plain * 1e6:>20.1f}{strict / plain:>8.2f}")


if __name__ == "__main__":
    main()
