"""Database tables: current resources, version history, search indexes and paged search sets.

Timestamps are stored as fixed-width UTC strings (`YYYY-MM-DDTHH:MM:SS.ffffff`) so that they sort
and compare the same way on SQLite and PostgreSQL and match the date search index exactly.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

NORM_TEXT = String(512).with_variant(String(512, collation="C"), "postgresql")

TYPE_LEN = 64
ID_LEN = 64
TS_LEN = 26

resources = Table(
    "resources",
    metadata,
    Column("res_type", String(TYPE_LEN), primary_key=True),
    Column("res_id", String(ID_LEN), primary_key=True),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", String(TS_LEN), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=True),
    Index("ix_resources_type_updated", "res_type", "last_updated"),
)

resource_history = Table(
    "resource_history",
    metadata,
    Column("res_type", String(TYPE_LEN), primary_key=True),
    Column("res_id", String(ID_LEN), primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("last_updated", String(TS_LEN), nullable=False),
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=True),
    Index("ix_history_type_updated", "res_type", "last_updated"),
    Index("ix_history_updated", "last_updated"),
)

idx_token = Table(
    "idx_token",
    metadata,
    Column("res_type", String(TYPE_LEN), nullable=False),
    Column("res_id", String(ID_LEN), nullable=False),
    Column("param", String(64), nullable=False),
    Column("system", String(512), nullable=True),
    Column("code", String(512), nullable=False),
    Index("ix_token_lookup", "res_type", "param", "code", "system"),
    Index("ix_token_owner", "res_type", "res_id"),
)

idx_string = Table(
    "idx_string",
    metadata,
    Column("res_type", String(TYPE_LEN), nullable=False),
    Column("res_id", String(ID_LEN), nullable=False),
    Column("param", String(64), nullable=False),
    # Binary collation: prefix search is a range scan, and ordering is by code point everywhere.
    Column("value_norm", NORM_TEXT, nullable=False),
    Column("value", String(512), nullable=False),
    Index("ix_string_lookup", "res_type", "param", "value_norm"),
    Index("ix_string_owner", "res_type", "res_id"),
)

idx_date = Table(
    "idx_date",
    metadata,
    Column("res_type", String(TYPE_LEN), nullable=False),
    Column("res_id", String(ID_LEN), nullable=False),
    Column("param", String(64), nullable=False),
    Column("low", String(TS_LEN), nullable=False),
    Column("high", String(TS_LEN), nullable=False),
    Index("ix_date_lookup", "res_type", "param", "low", "high"),
    Index("ix_date_owner", "res_type", "res_id"),
)

def _reference_columns() -> list[Column[Any]]:
    """Return the columns of a reference index table (fresh objects: a Column has one table)."""
    return [
        Column("res_type", String(TYPE_LEN), nullable=False),
        Column("res_id", String(ID_LEN), nullable=False),
        Column("param", String(64), nullable=False),
        Column("target_type", String(TYPE_LEN), nullable=True),
        Column("target_id", String(ID_LEN), nullable=False),
    ]


idx_reference = Table(
    "idx_reference",
    metadata,
    *_reference_columns(),
    Index("ix_reference_lookup", "res_type", "param", "target_id", "target_type"),
    Index("ix_reference_target", "target_type", "target_id"),
    Index("ix_reference_owner", "res_type", "res_id"),
)

# AuditEvents' references in a table of their own. Every read writes one event referring to the
# child read: in the shared table those rows would crowd each resource's reverse-reference
# entries (what $everything and _revinclude walk), and its owner-first lookup index would be
# written at a random page per row. Here one index leads with the target, and the owner index
# is time-ordered because audit ids are (see gateway.security.audit.time_ordered_ids).
idx_audit_reference = Table(
    "idx_audit_reference",
    metadata,
    *_reference_columns(),
    Index("ix_audit_reference_target", "target_id", "target_type", "param"),
    Index("ix_audit_reference_owner", "res_id"),
)

idx_number = Table(
    "idx_number",
    metadata,
    Column("res_type", String(TYPE_LEN), nullable=False),
    Column("res_id", String(ID_LEN), nullable=False),
    Column("param", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_number_lookup", "res_type", "param", "value"),
    Index("ix_number_owner", "res_type", "res_id"),
)

idx_uri = Table(
    "idx_uri",
    metadata,
    Column("res_type", String(TYPE_LEN), nullable=False),
    Column("res_id", String(ID_LEN), nullable=False),
    Column("param", String(64), nullable=False),
    Column("value", String(1024), nullable=False),
    Index("ix_uri_lookup", "res_type", "param", "value"),
    Index("ix_uri_owner", "res_type", "res_id"),
)

search_sets = Table(
    "search_sets",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("res_type", String(TYPE_LEN), nullable=False),
    Column("created", String(TS_LEN), nullable=False),
    Column("expires", String(TS_LEN), nullable=False),
    Column("total", Integer, nullable=False),
    Column("query", Text, nullable=False),
    Column("ids", Text, nullable=False),
    Index("ix_search_sets_expires", "expires"),
)

clients = Table(
    "clients",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("agency", String(64), nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated SMART v2 scopes pre-authorised
    Column("jwks", Text, nullable=False),  # the client's public keys (JWKS JSON)
    Column("description", String(256), nullable=True),
    Column("created", String(TS_LEN), nullable=False),
    Column("revoked", String(TS_LEN), nullable=True),
)

# A client assertion's jti, kept until the assertion would have expired anyway (replay check).
used_assertions = Table(
    "used_assertions",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires", String(TS_LEN), nullable=False),
    Index("ix_used_assertions_expires", "expires"),
)

# The gateway's own keys for signing access tokens; old keys verify until retired.
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("private_pem", Text, nullable=False),
    Column("created", String(TS_LEN), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("retired", String(TS_LEN), nullable=True),
)

# -- identity: golden records across agencies ----------------------------------------------------
# One row per source Patient: the golden Patient it belongs to, how sure the link is (match grade,
# score, the rule that decided, who decided) and the matching features, so matching never re-reads
# the Patient.
identity_links = Table(
    "identity_links",
    metadata,
    Column("source_id", String(ID_LEN), primary_key=True),
    Column("source", String(128), nullable=False),
    Column("golden_id", String(ID_LEN), nullable=False),
    Column("grade", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("rule", String(64), nullable=False),
    Column("decider", String(160), nullable=False),
    Column("features", Text, nullable=False),
    Column("digest", String(32), nullable=False),
    Column("updated", String(TS_LEN), nullable=False),
    Index("ix_identity_links_golden", "golden_id"),
)

# Blocking keys: a record is compared only with records sharing a key (sub-linear candidate search).
identity_blocks = Table(
    "identity_blocks",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("source_id", String(ID_LEN), primary_key=True),
    Index("ix_identity_blocks_source", "source_id"),
)

# A person's decisions about two source Patients (link or keep-apart); they outlive rebuilds.
identity_decisions = Table(
    "identity_decisions",
    metadata,
    Column("left_id", String(ID_LEN), primary_key=True),
    Column("right_id", String(ID_LEN), primary_key=True),
    Column("decision", String(16), nullable=False),
    Column("decider", String(160), nullable=False),
    Column("reason", String(512), nullable=True),
    Column("decided", String(TS_LEN), nullable=False),
    Index("ix_identity_decisions_right", "right_id"),
)

# Possible matches waiting for a person, and what was decided about them.
identity_reviews = Table(
    "identity_reviews",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("source_id", String(ID_LEN), nullable=False),
    Column("candidate_id", String(ID_LEN), nullable=False),
    Column("score", Float, nullable=False),
    Column("probability", Float, nullable=False),
    Column("rule", String(64), nullable=False),
    Column("levels", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created", String(TS_LEN), nullable=False),
    Column("decided", String(TS_LEN), nullable=True),
    Column("decider", String(160), nullable=True),
    Column("reason", String(512), nullable=True),
    Index("ix_identity_reviews_status", "status", "created"),
    Index("ix_identity_reviews_pair", "source_id", "candidate_id"),
)

# Every change to a link: who moved which source Patient from which golden Patient to which.
identity_history = Table(
    "identity_history",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("at", String(TS_LEN), nullable=False),
    Column("action", String(32), nullable=False),
    Column("source_id", String(ID_LEN), nullable=True),
    Column("golden_id", String(ID_LEN), nullable=True),
    Column("previous_golden", String(ID_LEN), nullable=True),
    Column("grade", String(16), nullable=True),
    Column("score", Float, nullable=True),
    Column("rule", String(64), nullable=True),
    Column("decider", String(160), nullable=False),
    Column("reason", String(512), nullable=True),
    Column("request_id", String(64), nullable=True),
    Index("ix_identity_history_source", "source_id", "at"),
    Index("ix_identity_history_golden", "golden_id", "at"),
    Index("ix_identity_history_previous", "previous_golden", "at"),
)

# The transactional outbox: messages to national services and subscribers, written in the
# transaction of the change that causes them. `seq` orders them (per ordering key); `id` is the
# stable message id every attempt reuses; `lease_token` fences a worker whose lease has expired.
outbox_messages = Table(
    "outbox_messages",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("destination", String(128), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("ordering_key", String(200), nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created", String(TS_LEN), nullable=False),
    Column("next_attempt", String(TS_LEN), nullable=False),
    Column("updated", String(TS_LEN), nullable=False),
    Column("delivered", String(TS_LEN), nullable=True),
    Column("last_error", String(512), nullable=True),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", String(TS_LEN), nullable=True),
    Column("lease_token", Integer, nullable=False, default=0),
    Column("agency", String(64), nullable=True),
    Column("request_id", String(64), nullable=True),
    Index("ix_outbox_state_next", "state", "next_attempt"),
    Index("ix_outbox_key_seq", "ordering_key", "seq"),
    Index("ix_outbox_destination_state", "destination", "state"),
)

# One circuit breaker per destination, shared by every worker process.
outbox_breakers = Table(
    "outbox_breakers",
    metadata,
    Column("destination", String(128), primary_key=True),
    Column("state", String(16), nullable=False),  # closed, open, half-open
    Column("failures", Integer, nullable=False, default=0),
    Column("opened", String(TS_LEN), nullable=True),
    Column("probe_at", String(TS_LEN), nullable=True),
    Column("updated", String(TS_LEN), nullable=False),
)

# The active FHIR Subscriptions, kept beside the resources so that every write transaction can
# find the ones its changes may match with one indexed query.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("res_type", String(TYPE_LEN), nullable=False),
    Column("criteria", Text, nullable=False),
    Column("endpoint", String(1024), nullable=False),
    Column("headers", Text, nullable=False),
    Column("payload", String(64), nullable=True),
    Column("agency", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("failures", Integer, nullable=False, default=0),
    Index("ix_subscriptions_type_status", "res_type", "status"),
)

INDEX_TABLES = (idx_token, idx_string, idx_date, idx_reference, idx_number, idx_uri)
# Resource types that are only ever created, never changed: their one version is the current
# row, so no history row repeats it (vread and _history read it from `resources`).
APPEND_ONLY = frozenset({"AuditEvent"})
# The reference index of each resource type kept apart from the shared one.
SEPARATE_REFERENCES = {"AuditEvent": idx_audit_reference}


# Reference search parameters answered from another parameter's rows, which are then not stored
# twice: type -> {parameter: (the parameter whose rows hold it, the target type they must have)}.
# An AuditEvent's `patient` is its `entity` rows that point at a Patient (resource_types.yaml).
DERIVED_REFERENCES: dict[str, dict[str, tuple[str, str]]] = {
    "AuditEvent": {"patient": ("entity", "Patient")},
}


def stored_references(res_type: str, rows: list[tuple[str, str | None, str]],
                      ) -> list[tuple[str, str | None, str]]:
    """Return the (param, target type, target id) rows of a resource that are stored."""
    derived = DERIVED_REFERENCES.get(res_type)
    if derived is None:
        return rows
    return [row for row in rows if row[0] not in derived]


def reference_table(res_type: str) -> Table:
    """Return the table holding a resource type's reference index rows."""
    return SEPARATE_REFERENCES.get(res_type, idx_reference)


def index_tables(res_type: str) -> tuple[Table, ...]:
    """Return the index tables a resource type's rows live in (INDEX_TABLES' order)."""
    separate = SEPARATE_REFERENCES.get(res_type)
    if separate is None:
        return INDEX_TABLES
    return tuple(separate if table is idx_reference else table for table in INDEX_TABLES)
