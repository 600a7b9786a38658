"""Identifier systems, code systems and identifier check rules shared by every package.

This package imports nothing from the rest of Wraparound, so `gateway`, `connectors` and
`mappings` can all depend on it without breaking the layering rule in DESIGN.md.
"""
from __future__ import annotations

from vocab import systems
from vocab.identifiers import (
    InvalidIdentifier,
    is_valid_nhs_number,
    is_valid_upn,
    nhs_number_check_digit,
    upn_check_letter,
)

__all__ = [
    "InvalidIdentifier",
    "is_valid_nhs_number",
    "is_valid_upn",
    "nhs_number_check_digit",
    "systems",
    "upn_check_letter",
]
