"""Ingest: local source exports mapped to FHIR, validated and stored, one outcome per record."""
from __future__ import annotations

from gateway.ingest.service import IngestReport, IngestService, RecordOutcome

__all__ = ["IngestReport", "IngestService", "RecordOutcome"]
