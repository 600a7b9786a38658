"""Storage: the resource store contract and its SQL implementation."""
from __future__ import annotations

from gateway.store.base import (
    Change,
    ReadSession,
    ResourceStore,
    RetryableConflict,
    StoredResource,
    StoreError,
    StoreUnavailable,
    WriteSession,
)
from gateway.store.engine import StorageConfigError, make_engine
from gateway.store.migrate import current_revision, head_revision, upgrade
from gateway.store.sql import SqlResourceStore

__all__ = [
    "Change", "ReadSession", "ResourceStore", "RetryableConflict", "SqlResourceStore", "StorageConfigError",
    "StoreError", "StoreUnavailable", "StoredResource", "WriteSession", "current_revision",
    "head_revision", "make_engine", "upgrade",
]
