"""Check rules for UK identifiers: NHS number (Modulus 11) and Unique Pupil Number (check letter)."""
from __future__ import annotations

_UPN_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"  # I, O and S are never used


class InvalidIdentifier(ValueError):
    """Raised when an identifier fails its format or check-character rule."""


def nhs_number_check_digit(first_nine: str) -> int | None:
    """Return the Modulus 11 check digit for nine digits, or None when no valid number exists."""
    if len(first_nine) != 9 or not first_nine.isdigit():
        raise InvalidIdentifier("an NHS number stem is nine digits")
    total = sum(int(d) * (10 - i) for i, d in enumerate(first_nine))
    check = 11 - (total % 11)
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def is_valid_nhs_number(value: str) -> bool:
    """Return True when value is ten digits with a correct Modulus 11 check digit."""
    if len(value) != 10 or not value.isascii() or not value.isdigit():
        return False
    if len(set(value)) == 1:
        return False
    return nhs_number_check_digit(value[:9]) == int(value[9])


def _upn_char_value(ch: str) -> int:
    if ch.isdigit():
        return int(ch)
    return _UPN_LETTERS.index(ch)


def upn_check_letter(body: str) -> str:
    """Return the check letter for the last twelve characters of a UPN."""
    if len(body) != 12 or not body[:11].isdigit() or not (
        body[11].isdigit() or body[11] in _UPN_LETTERS
    ):
        raise InvalidIdentifier("a UPN body is eleven digits then a digit or letter")
    total = sum(_upn_char_value(ch) * weight for weight, ch in enumerate(body, start=2))
    return _UPN_LETTERS[total % 23]


def is_valid_upn(value: str) -> bool:
    """Return True when value is a 13-character UPN whose first character is its check letter."""
    if len(value) != 13 or not value.isascii():
        return False
    try:
        return upn_check_letter(value[1:]) == value[0]
    except InvalidIdentifier:
        return False
