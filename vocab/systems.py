"""Every identifier system and code system URI Wraparound uses, in one place."""
from __future__ import annotations

# Project namespace for systems that have no official NamingSystem.
BASE = "https://wraparound.example.org/fhir"

# Official UK identifiers.
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
ODS_ORGANIZATION_CODE = "https://fhir.nhs.uk/Id/ods-organization-code"
SDS_USER_ID = "https://fhir.nhs.uk/Id/sds-user-id"
SCHOOL_URN = "https://fhir.hl7.org.uk/Id/urn-school-number"

# Project identifiers (no official NamingSystem exists).
UPN = f"{BASE}/Id/unique-pupil-number"
CHILD_INDEX_ID = f"{BASE}/Id/child-index-id"
CAF_REFERENCE = f"{BASE}/Id/caf-reference"
GOLDEN_ID = f"{BASE}/Id/golden-patient"


def local_id_system(source: str, kind: str = "record") -> str:
    """Return the identifier system for a local source system's own ids (e.g. social-care child id)."""
    return f"{BASE}/Id/local/{source}/{kind}"


# HL7v3 OIDs used on the SOAP side.
OID_NHS_NUMBER = "2.16.840.1.113883.2.1.4.1"
OID_LOCAL_PATIENT_ID = "2.16.840.1.113883.2.1.3.2.4.18.24"

# Code systems.
UKCORE_NHS_NUMBER_VERIFICATION_STATUS = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
)
UKCORE_NHS_NUMBER_VERIFICATION_EXTENSION = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
)
UKCORE_ETHNIC_CATEGORY = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"
UKCORE_ETHNIC_CATEGORY_EXTENSION = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
)
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
EPISODE_OF_CARE_TYPE = f"{BASE}/CodeSystem/episode-of-care-type"
LEGAL_STATUS = f"{BASE}/CodeSystem/legal-status"
CATEGORY_OF_ABUSE = f"{BASE}/CodeSystem/category-of-abuse"
CP_PLAN_TYPE = f"{BASE}/CodeSystem/cp-plan-type"
AGENCY = f"{BASE}/CodeSystem/agency"
MATCH_GRADE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/match-grade"
SOURCE_SYSTEM = f"{BASE}/Id/source-system"
PROVENANCE_PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
PARENTAL_RESPONSIBILITY = f"{BASE}/CodeSystem/parental-responsibility"
OBSERVATION_CODE = f"{BASE}/CodeSystem/observation-code"
VACCINE_LOCAL = f"{BASE}/CodeSystem/vaccine-local"
ENCOUNTER_TYPE = f"{BASE}/CodeSystem/encounter-type"
EXCLUSION_CATEGORY = f"{BASE}/CodeSystem/exclusion-category"
EXCLUSION_REASON = f"{BASE}/CodeSystem/exclusion-reason"
SEN_PROVISION = f"{BASE}/CodeSystem/sen-provision"
NEET_ACTIVITY = f"{BASE}/CodeSystem/neet-activity"
YOUTH_JUSTICE_ORDER = f"{BASE}/CodeSystem/youth-justice-order"
OFFENCE_CATEGORY = f"{BASE}/CodeSystem/offence-category"
RISK_RATING = f"{BASE}/CodeSystem/risk-rating"
FLAG_CODE = f"{BASE}/CodeSystem/flag-code"
PRACTITIONER_ROLE = f"{BASE}/CodeSystem/practitioner-role"
CONTACT_METHOD = f"{BASE}/CodeSystem/contact-method"
UCUM = "http://unitsofmeasure.org"
FLAG_DETAIL_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-detail"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
AUDIT_EVENT_SUBTYPE = f"{BASE}/CodeSystem/audit-event-subtype"
AUDIT_ENTITY_DETAIL = f"{BASE}/CodeSystem/audit-entity-detail"
CLIENT_ID = f"{BASE}/Id/client"
DICOM_AUDIT_ROLE = "http://dicom.nema.org/resources/ontology/DCM"
SECURITY_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
