"""FHIR façades for the national services (/national/...) and the inbound SOAP endpoints.

- `/national/pds` — read by NHS number, search by demographics, `Patient/$verify`, answering
  UK Core Patients from the health-spine-like PDS;
- `/national/cpis` — the CP-IS query as Flag -> CarePlan -> CareTeam, the access history as
  AuditEvents, and the local authority's `$upload`;
- `/national/contactpoint` — the national child index: search, a child's record with an access
  reason (Patient, RelatedPerson, CareTeam, Organization, Practitioner), involvements, the lead
  professional, shielding, the access log (`gateway.national.contactpoint`) and the local
  authority's `$feed` of children (`gateway.national.feed`);
- `/national/ecaf` — the CAF assessment store: the CAF form as a Questionnaire, assessments as
  QuestionnaireResponses, consent, team, action plan, review and close (`gateway.national.ecaf`);
- `/inbound/cpis/notifications` — CP-IS notifications, verified by their own WS-Security,
  stored and acknowledged: access to service as AuditEvent + Communication, inactive NHS numbers
  as a Flag per number + Communication.

Each base has its own CapabilityStatement at `<base>/metadata`. What stored local changes imply
for the child index and the CAF store (involvements, CAFs) is `gateway.national.push`, sent by
the outbox or by `wraparound national push`.
"""
from __future__ import annotations

from flask import Flask, request

from gateway.national.registry import EXTENSION, NationalServices, build_national, get_national


def _fhir_base() -> str:
    from gateway.services import get_services

    configured = get_services().settings.base_url
    root = configured.rstrip("/") if configured else request.host_url.rstrip("/")
    return f"{root}/fhir"


def init_app(app: Flask) -> None:
    """Register the national façades and inbound endpoints on the app."""
    from gateway.national import contactpoint, ecaf
    from gateway.national.views import bp, inbound_bp

    app.extensions[EXTENSION] = build_national(app.extensions["wraparound"],
                                               fhir_base=_fhir_base)
    app.register_blueprint(bp)
    app.register_blueprint(inbound_bp)
    settings = app.extensions["wraparound"].settings
    contactpoint.init_app(app, settings)
    ecaf.init_app(app, settings)


__all__ = ["NationalServices", "get_national", "init_app"]
