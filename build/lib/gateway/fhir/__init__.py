"""FHIR R4: resource registry, search, validation, the REST service and its views."""
