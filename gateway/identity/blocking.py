"""Blocking keys: a record is only ever compared with records that share one of its keys.

Keys are looked up through an index, so finding candidates costs the size of a few small buckets,
not the number of stored children. Each key tolerates a different kind of mess:

    nhs:<number>                      a valid NHS number
    upn:<upn>                         a valid UPN
    lid:<system>|<value>              a local system's own id
    fy:<family sound>:<birth year>    family name by sound + year (day/month swapped, typo in day)
    gd:<given sound>:<birth date>     given name by sound + date (changed surname)
    pd:<postcode sector>:<birth date> where the child lives + date (nickname and surname change)

Birth dates in keys are order-free in day and month, so a transposed date lands in the same key.
"""
from __future__ import annotations

import jellyfish

from gateway.identity.features import Features, postcode_sector

KEY_LEN = 128


def _sound(name: str) -> str:
    flat = name.replace("-", "").replace(" ", "")
    return jellyfish.metaphone(flat)[:6] if flat else ""


def _date_key(birth_date: str) -> str:
    year, month, day = birth_date.split("-")
    low, high = sorted((month, day))
    return f"{year}{low}{high}"


def blocking_keys(f: Features) -> list[str]:
    """Return the blocking keys of a record (deduplicated, each at most 128 characters)."""
    keys: list[str] = [f"nhs:{n}" for n in f.nhs]
    keys += [f"upn:{u}" for u in f.upn]
    keys += [f"lid:{lid}" for lid in f.local_ids]
    if f.birth_date:
        year = f.birth_date[:4]
        dkey = _date_key(f.birth_date)
        family = {_sound(n) for n in f.family} | {
            _sound(p) for n in f.family if "-" in n for p in n.split("-")}
        keys += [f"fy:{s}:{year}" for s in sorted(family) if s]
        given = {_sound(n) for n in f.given}
        keys += [f"gd:{s}:{dkey}" for s in sorted(given) if s]
        keys += [f"pd:{s}:{dkey}" for s in sorted({postcode_sector(p) for p in f.postcodes})]
    out: list[str] = []
    for key in keys:
        key = key[:KEY_LEN]
        if key not in out:
            out.append(key)
    return out


__all__ = ["KEY_LEN", "blocking_keys"]
