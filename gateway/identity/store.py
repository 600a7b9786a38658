"""The identity tables, read and written inside the resource store's sessions.

Every function takes the session (`tx`) of a `SqlResourceStore.read`/`write` call, so identity
changes commit or roll back with the resources they describe.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy import and_, delete, false, func, insert, or_, select, update

from gateway.identity.features import Features
from gateway.store.schema import (
    identity_blocks,
    identity_decisions,
    identity_history,
    identity_links,
    identity_reviews,
    resources,
)
from gateway.store.sql import utc_now

ALGORITHM = "algorithm"
CHUNK = 500


@dataclass(frozen=True)
class Link:
    """A source Patient's link to its golden Patient."""

    source_id: str
    source: str
    golden_id: str
    grade: str
    score: float
    rule: str
    decider: str
    features: Features
    digest: str
    updated: str = ""

    @property
    def by_person(self) -> bool:
        """Return True when a person, not the algorithm, made this link."""
        return self.decider != ALGORITHM

    def to_json(self) -> dict[str, Any]:
        """Return the link as JSON-ready data (no personal data: references and grades)."""
        return {"source": f"Patient/{self.source_id}", "system": self.source,
                "golden": f"Patient/{self.golden_id}", "grade": self.grade,
                "score": round(self.score, 3), "rule": self.rule, "decider": self.decider,
                "updated": self.updated}


@dataclass(frozen=True)
class Review:
    """A possible match waiting for a person (or decided by one)."""

    id: str
    source_id: str
    candidate_id: str
    score: float
    probability: float
    rule: str
    levels: dict[str, str]
    status: str
    created: str
    decided: str | None = None
    decider: str | None = None
    reason: str | None = None

    def to_json(self, goldens: dict[str, str] | None = None) -> dict[str, Any]:
        """Return the item as JSON-ready data (references, grade and field levels only)."""
        out: dict[str, Any] = {
            "id": self.id, "status": self.status, "grade": "possible",
            "source": f"Patient/{self.source_id}", "candidate": f"Patient/{self.candidate_id}",
            "score": round(self.score, 3), "probability": round(self.probability, 4),
            "rule": self.rule, "levels": self.levels, "created": self.created,
        }
        if goldens:
            for key, ref in (("sourceGolden", self.source_id),
                             ("candidateGolden", self.candidate_id)):
                if ref in goldens:
                    out[key] = f"Patient/{goldens[ref]}"
        for key, value in (("decided", self.decided), ("decider", self.decider),
                           ("reason", self.reason)):
            if value:
                out[key] = value
        return out


def _link(row: Any) -> Link:
    return Link(row.source_id, row.source, row.golden_id, row.grade, float(row.score), row.rule,
                row.decider, Features.from_json(row.features), row.digest, row.updated)


def _review(row: Any) -> Review:
    return Review(row.id, row.source_id, row.candidate_id, float(row.score),
                  float(row.probability), row.rule, orjson.loads(row.levels), row.status,
                  row.created, row.decided, row.decider, row.reason)


def _chunks(items: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield list(items[start:start + CHUNK])


# -- links --------------------------------------------------------------------------------------
def get_link(tx: Any, source_id: str) -> Link | None:
    """Return a source Patient's link, or None."""
    row = tx.conn.execute(select(identity_links).where(
        identity_links.c.source_id == source_id)).first()
    return _link(row) if row else None


def get_links(tx: Any, source_ids: Sequence[str]) -> dict[str, Link]:
    """Return the links of several source Patients."""
    out: dict[str, Link] = {}
    for chunk in _chunks(sorted(set(source_ids))):
        for row in tx.conn.execute(select(identity_links).where(
                identity_links.c.source_id.in_(chunk))):
            out[row.source_id] = _link(row)
    return out


def members(tx: Any, golden_id: str) -> list[Link]:
    """Return the links of a golden Patient's source Patients, in id order."""
    rows = tx.conn.execute(select(identity_links).where(identity_links.c.golden_id == golden_id)
                           .order_by(identity_links.c.source_id))
    return [_link(r) for r in rows]


def members_of(tx: Any, golden_ids: Iterable[str]) -> dict[str, list[Link]]:
    """Return the links of each golden Patient's source Patients, in id order."""
    out: dict[str, list[Link]] = {}
    for chunk in _chunks(sorted(set(golden_ids))):
        rows = tx.conn.execute(select(identity_links)
                               .where(identity_links.c.golden_id.in_(chunk))
                               .order_by(identity_links.c.source_id))
        for row in rows:
            out.setdefault(row.golden_id, []).append(_link(row))
    return out


def member_ids(tx: Any, golden_ids: Iterable[str]) -> dict[str, list[str]]:
    """Return the source Patient ids of each golden Patient."""
    out: dict[str, list[str]] = {}
    for chunk in _chunks(sorted(set(golden_ids))):
        rows = tx.conn.execute(select(identity_links.c.golden_id, identity_links.c.source_id)
                               .where(identity_links.c.golden_id.in_(chunk))
                               .order_by(identity_links.c.source_id))
        for row in rows:
            out.setdefault(row.golden_id, []).append(row.source_id)
    return out


def all_links(tx: Any) -> Iterator[Link]:
    """Yield every link."""
    for row in tx.conn.execute(select(identity_links).order_by(identity_links.c.source_id)):
        yield _link(row)


def put_link(tx: Any, link: Link, *, new: bool = False) -> None:
    """Insert (new) or replace a link."""
    values = {"source": link.source, "golden_id": link.golden_id, "grade": link.grade,
              "score": float(link.score), "rule": link.rule[:64], "decider": link.decider[:160],
              "features": link.features.to_json(), "digest": link.digest, "updated": utc_now()}
    done = None if new else tx.conn.execute(update(identity_links).where(
        identity_links.c.source_id == link.source_id).values(**values))
    if done is None or done.rowcount == 0:
        tx.conn.execute(insert(identity_links).values(source_id=link.source_id, **values))


def drop_link(tx: Any, source_id: str) -> None:
    """Forget a source Patient (it was deleted): its link and its blocking keys."""
    tx.conn.execute(delete(identity_links).where(identity_links.c.source_id == source_id))
    tx.conn.execute(delete(identity_blocks).where(identity_blocks.c.source_id == source_id))


def golden_of(tx: Any, source_ids: Sequence[str]) -> dict[str, str]:
    """Return the golden Patient id of each linked source Patient."""
    out: dict[str, str] = {}
    for chunk in _chunks(sorted(set(source_ids))):
        rows = tx.conn.execute(select(identity_links.c.source_id, identity_links.c.golden_id)
                               .where(identity_links.c.source_id.in_(chunk)))
        out.update({r.source_id: r.golden_id for r in rows})
    return out


def is_golden_id(tx: Any, golden_id: str) -> bool:
    """Return True when some source Patient is linked to this golden Patient."""
    return tx.conn.execute(select(identity_links.c.source_id).where(
        identity_links.c.golden_id == golden_id).limit(1)).first() is not None


# -- blocking -----------------------------------------------------------------------------------
def set_keys(tx: Any, source_id: str, keys: Sequence[str]) -> None:
    """Replace a source Patient's blocking keys."""
    tx.conn.execute(delete(identity_blocks).where(identity_blocks.c.source_id == source_id))
    if keys:
        tx.conn.execute(insert(identity_blocks), [{"key": k, "source_id": source_id}
                                                  for k in keys])


def candidates(tx: Any, keys: Sequence[str], *, exclude: str | None,
               max_bucket: int) -> list[str]:
    """Return the source Patients sharing a blocking key, skipping keys shared too widely."""
    if not keys:
        return []
    b = identity_blocks.c
    sizes = tx.conn.execute(select(b.key, func.count()).where(b.key.in_(list(keys)))
                            .group_by(b.key)).all()
    # A key shared too widely (a common name in a common year) is skipped: other keys find the
    # match, and the cost of one lookup stays bounded whatever the number of stored children.
    usable = sorted(key for key, size in sizes if size <= max_bucket)
    if not usable:
        return []
    rows = tx.conn.execute(select(b.source_id).where(b.key.in_(usable)).distinct()
                           .order_by(b.source_id))
    return [row.source_id for row in rows if row.source_id != exclude]


def replace_all_keys(tx: Any, rows: list[dict[str, str]]) -> None:
    """Replace every blocking key (rebuild)."""
    tx.conn.execute(delete(identity_blocks))
    for start in range(0, len(rows), 5000):
        tx.conn.execute(insert(identity_blocks), rows[start:start + 5000])


# -- decisions ----------------------------------------------------------------------------------
def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def put_decision(tx: Any, a: str, b: str, decision: str, decider: str,
                 reason: str | None) -> None:
    """Record (or replace) a person's decision about two source Patients."""
    left, right = _pair(a, b)
    d = identity_decisions.c
    tx.conn.execute(delete(identity_decisions).where(d.left_id == left, d.right_id == right))
    tx.conn.execute(insert(identity_decisions).values(
        left_id=left, right_id=right, decision=decision, decider=decider[:160],
        reason=(reason or None) and reason[:512], decided=utc_now()))


def drop_decisions_between(tx: Any, group_a: Sequence[str], group_b: Sequence[str],
                           decision: str) -> int:
    """Remove decisions of one kind between any record of one group and any of the other."""
    d = identity_decisions.c
    removed = 0
    pairs = [_pair(x, y) for x in group_a for y in group_b if x != y]
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start:start + CHUNK]
        result = tx.conn.execute(delete(identity_decisions).where(
            d.decision == decision,
            or_(*[and_(d.left_id == left, d.right_id == right) for left, right in chunk])))
        removed += result.rowcount or 0
    return removed


def decisions_for(tx: Any, source_ids: Sequence[str]) -> list[tuple[str, str, str]]:
    """Return (left, right, decision) for every decision touching the given source Patients."""
    d = identity_decisions.c
    out: list[tuple[str, str, str]] = []
    for chunk in _chunks(sorted(set(source_ids))):
        rows = tx.conn.execute(select(d.left_id, d.right_id, d.decision).where(
            or_(d.left_id.in_(chunk), d.right_id.in_(chunk))))
        out.extend((r.left_id, r.right_id, r.decision) for r in rows)
    return sorted(set(out))


def all_decisions(tx: Any) -> list[tuple[str, str, str]]:
    """Return every decision as (left, right, decision)."""
    d = identity_decisions.c
    rows = tx.conn.execute(select(d.left_id, d.right_id, d.decision)
                           .order_by(d.left_id, d.right_id))
    return [(r.left_id, r.right_id, r.decision) for r in rows]


# -- review queue -------------------------------------------------------------------------------
def queue_review(tx: Any, source_id: str, candidate_id: str, score: float, probability: float,
                 rule: str, levels: dict[str, str]) -> str | None:
    """Queue a possible match unless one is already queued or decided; return the new item id."""
    r = identity_reviews.c
    existing = tx.conn.execute(select(r.id, r.status).where(or_(
        and_(r.source_id == source_id, r.candidate_id == candidate_id),
        and_(r.source_id == candidate_id, r.candidate_id == source_id)))).all()
    if any(row.status != "superseded" for row in existing):
        for row in existing:
            if row.status == "open":
                tx.conn.execute(update(identity_reviews).where(r.id == row.id).values(
                    score=score, probability=probability, rule=rule[:64],
                    levels=orjson.dumps(levels).decode()))
        return None
    item_id = str(uuid.uuid4())
    tx.conn.execute(insert(identity_reviews).values(
        id=item_id, source_id=source_id, candidate_id=candidate_id, score=float(score),
        probability=float(probability), rule=rule[:64], levels=orjson.dumps(levels).decode(),
        status="open", created=utc_now()))
    return item_id


def get_review(tx: Any, item_id: str) -> Review | None:
    """Return one review item, or None."""
    row = tx.conn.execute(select(identity_reviews).where(identity_reviews.c.id == item_id)).first()
    return _review(row) if row else None


def list_reviews(tx: Any, status: str | None, count: int, offset: int) -> tuple[list[Review], int]:
    """Return a page of review items (oldest first) and how many there are."""
    r = identity_reviews.c
    conds = [r.status == status] if status else []
    total = tx.conn.execute(select(func.count()).select_from(identity_reviews)
                            .where(*conds)).scalar_one()
    rows = tx.conn.execute(select(identity_reviews).where(*conds)
                           .order_by(r.created, r.id).limit(count).offset(offset))
    return [_review(row) for row in rows], int(total)


def open_reviews(tx: Any) -> list[Review]:
    """Return every open review item."""
    rows = tx.conn.execute(select(identity_reviews).where(identity_reviews.c.status == "open")
                           .order_by(identity_reviews.c.created, identity_reviews.c.id))
    return [_review(row) for row in rows]


def close_review(tx: Any, item_id: str, status: str, decider: str,
                 reason: str | None) -> None:
    """Mark a review item decided (linked, kept-apart) or superseded."""
    tx.conn.execute(update(identity_reviews).where(identity_reviews.c.id == item_id).values(
        status=status, decided=utc_now(), decider=decider[:160],
        reason=(reason or None) and reason[:512]))


def count_open_reviews(tx: Any) -> int:
    """Return how many possible matches wait for a person."""
    return int(tx.conn.execute(select(func.count()).select_from(identity_reviews).where(
        identity_reviews.c.status == "open")).scalar_one())


def drop_open_reviews(tx: Any) -> None:
    """Remove every open review item (a rebuild queues them again)."""
    tx.conn.execute(delete(identity_reviews).where(identity_reviews.c.status == "open"))


# -- history ------------------------------------------------------------------------------------
def record(tx: Any, action: str, *, decider: str, source_id: str | None = None,
           golden_id: str | None = None, previous_golden: str | None = None,
           grade: str | None = None, score: float | None = None, rule: str | None = None,
           reason: str | None = None, request_id: str | None = None) -> None:
    """Append one entry to the link history."""
    tx.conn.execute(insert(identity_history).values(**_history_row(
        action, decider, source_id, golden_id, previous_golden, grade, score, rule, reason,
        request_id)))


def _history_row(action: str, decider: str, source_id: str | None, golden_id: str | None,
                 previous_golden: str | None, grade: str | None, score: float | None,
                 rule: str | None, reason: str | None, request_id: str | None,
                 ) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "at": utc_now(), "action": action,
            "source_id": source_id, "golden_id": golden_id, "previous_golden": previous_golden,
            "grade": grade, "score": None if score is None else float(score),
            "rule": rule and rule[:64], "decider": decider[:160],
            "reason": (reason or None) and reason[:512],
            "request_id": request_id and request_id[:64]}


def history(tx: Any, patient_id: str, count: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Return a page of the history of a source or golden Patient (newest first) and its size."""
    h = identity_history.c
    cond = or_(h.source_id == patient_id, h.golden_id == patient_id,
               h.previous_golden == patient_id)
    total = tx.conn.execute(select(func.count()).select_from(identity_history)
                            .where(cond)).scalar_one()
    rows = tx.conn.execute(select(identity_history).where(cond)
                           .order_by(h.at.desc(), h.id).limit(count).offset(offset))
    out = []
    for row in rows:
        entry: dict[str, Any] = {"at": row.at[:23] + "Z", "action": row.action,
                                 "decider": row.decider}
        for key, ref in (("source", row.source_id), ("golden", row.golden_id),
                         ("previousGolden", row.previous_golden)):
            if ref:
                entry[key] = f"Patient/{ref}"
        for key, value in (("grade", row.grade), ("rule", row.rule), ("reason", row.reason),
                           ("requestId", row.request_id)):
            if value:
                entry[key] = value
        if row.score is not None:
            entry["score"] = round(float(row.score), 3)
        out.append(entry)
    return out, int(total)


# -- source Patients ----------------------------------------------------------------------------
def patient_rows(tx: Any) -> Iterator[tuple[str, str]]:
    """Yield (id, JSON) of every current Patient, in id order."""
    res = resources.c
    rows = tx.conn.execute(select(res.res_id, res.content).where(
        res.res_type == "Patient", res.deleted == false()).order_by(res.res_id))
    for row in rows:
        if row.content:
            yield row.res_id, row.content


# -- one batch of resolutions --------------------------------------------------------------------
class Direct:
    """The identity tables as one resolution reads and writes them: a statement per call."""

    def get_link(self, tx: Any, source_id: str) -> Link | None:
        return get_link(tx, source_id)

    def get_links(self, tx: Any, source_ids: Sequence[str]) -> dict[str, Link]:
        return get_links(tx, source_ids)

    def golden_of(self, tx: Any, source_ids: Sequence[str]) -> dict[str, str]:
        return golden_of(tx, source_ids)

    def members(self, tx: Any, golden_id: str) -> list[Link]:
        return members(tx, golden_id)

    def is_golden_id(self, tx: Any, golden_id: str) -> bool:
        return is_golden_id(tx, golden_id)

    def put_link(self, tx: Any, link: Link, *, new: bool = False) -> None:
        put_link(tx, link, new=new)

    def drop_link(self, tx: Any, source_id: str) -> None:
        drop_link(tx, source_id)

    def record(self, tx: Any, action: str, **values: Any) -> None:
        record(tx, action, **values)

    def set_keys(self, tx: Any, source_id: str, keys: Sequence[str]) -> None:
        set_keys(tx, source_id, keys)

    def candidates(self, tx: Any, keys: Sequence[str], *, exclude: str | None,
                   max_bucket: int) -> list[str]:
        return candidates(tx, keys, exclude=exclude, max_bucket=max_bucket)

    def open_reviews(self, tx: Any) -> list[Review]:
        return open_reviews(tx)

    def queue_review(self, tx: Any, source_id: str, candidate_id: str, score: float,
                     probability: float, rule: str, levels: dict[str, str]) -> str | None:
        return queue_review(tx, source_id, candidate_id, score, probability, rule, levels)

    def close_review(self, tx: Any, item_id: str, status: str, decider: str,
                     reason: str | None) -> None:
        close_review(tx, item_id, status, decider, reason)

    def flush(self, tx: Any) -> None:
        """Write what is held back (nothing here)."""


_UNKNOWN = object()


class Batch(Direct):
    """The identity tables as a batch of resolutions (an ingest chunk) reads and writes them.

    Reads and writes give the same answers as `Direct`, with fewer statements:

    - blocking keys: the buckets of the batch's keys are read once (their sizes, then the
      members of the buckets not too wide to stay so) and kept current in memory as the batch
      replaces keys; the replaced keys are written by one delete and one multi-row insert;
    - links: each link read or written is remembered, so a link read again costs nothing; new
      links and history entries are held back and inserted together, before any statement
      that reads the links table and when the batch ends;
    - golden ids: whether the batch's own candidate golden ids are taken is read once and kept
      current as links move;
    - open review items: read once and kept current (re-read after an item is queued).

    The tables are only ever written by the batch while it runs (the caller holds the identity
    lock), so what it read stays true.
    """

    def __init__(self, pids: Sequence[str], wanted: Callable[[], Iterable[str]],
                 watched: Iterable[str], max_bucket: int) -> None:
        self.size = len(set(pids))
        self.max_bucket = max_bucket
        self.wanted = wanted  # the keys the batch will likely look up, read with the first
        self.buckets: dict[str, set[str]] = {}
        self.wide: set[str] = set()
        self.keys_of: dict[str, set[str]] = {}  # loaded keys of sources the batch left alone
        self.changed: dict[str, list[str]] = {}  # sources whose keys the batch replaced
        self.links: dict[str, Link | None] = {}
        self.new_links: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.watched = set(watched)
        self.goldens: dict[str, set[str]] | None = None
        self.reviews: list[Review] | None = None
        self.primed = False

    # -- held-back writes ---------------------------------------------------------------------
    def _write_links(self, tx: Any) -> None:
        if self.new_links:
            rows, self.new_links = self.new_links, []
            tx.insert_rows(identity_links, rows)
        if self.history:
            rows, self.history = self.history, []
            tx.insert_rows(identity_history, rows)

    def flush(self, tx: Any) -> None:
        """Write the held-back links, history and replaced blocking keys."""
        self._write_links(tx)
        if self.changed:
            changed, self.changed = self.changed, {}
            for chunk in _chunks(sorted(changed)):
                tx.conn.execute(delete(identity_blocks).where(
                    identity_blocks.c.source_id.in_(chunk)))
            tx.insert_rows(identity_blocks, [{"key": k, "source_id": pid}
                                             for pid, keys in changed.items() for k in keys])
            self.buckets, self.wide, self.keys_of = {}, set(), {}

    # -- links --------------------------------------------------------------------------------
    def _remember(self, link: Link) -> None:
        self.links[link.source_id] = link

    def _moved(self, source_id: str, golden_id: str | None) -> None:
        """Keep the watched golden ids' members current as a link is written or dropped."""
        previous = self.links.get(source_id, _UNKNOWN)
        if self.goldens is None:
            return
        if previous is _UNKNOWN:
            self.goldens = None  # read again when next asked
            return
        if isinstance(previous, Link) and previous.golden_id in self.goldens:
            self.goldens[previous.golden_id].discard(source_id)
        if golden_id is not None and golden_id in self.goldens:
            self.goldens[golden_id].add(source_id)

    def get_links(self, tx: Any, source_ids: Sequence[str]) -> dict[str, Link]:
        missing = sorted({s for s in source_ids if s not in self.links})
        if missing:
            # the links of every source in the buckets read so far, read with the first miss
            missing = sorted({*missing, *(s for members_ in self.buckets.values()
                                          for s in members_ if s not in self.links)})
            self._write_links(tx)
            found = get_links(tx, missing)
            for sid in missing:
                self.links[sid] = found.get(sid)
        out: dict[str, Link] = {}
        for sid in sorted(set(source_ids)):
            link = self.links[sid]
            if link is not None:
                out[sid] = link
        return out

    def get_link(self, tx: Any, source_id: str) -> Link | None:
        return self.get_links(tx, [source_id]).get(source_id)

    def golden_of(self, tx: Any, source_ids: Sequence[str]) -> dict[str, str]:
        return {sid: link.golden_id for sid, link in self.get_links(tx, source_ids).items()}

    def members(self, tx: Any, golden_id: str) -> list[Link]:
        self._write_links(tx)
        found = members(tx, golden_id)
        for link in found:
            self.links.setdefault(link.source_id, link)
        return found

    def is_golden_id(self, tx: Any, golden_id: str) -> bool:
        if golden_id not in self.watched:
            self._write_links(tx)
            return is_golden_id(tx, golden_id)
        if self.goldens is None:
            self._write_links(tx)
            self.goldens = {gid: set() for gid in self.watched}
            for chunk in _chunks(sorted(self.watched)):
                rows = tx.conn.execute(select(identity_links.c.source_id,
                                              identity_links.c.golden_id)
                                       .where(identity_links.c.golden_id.in_(chunk)))
                for row in rows:
                    self.goldens[row.golden_id].add(row.source_id)
        return bool(self.goldens[golden_id])

    def put_link(self, tx: Any, link: Link, *, new: bool = False) -> None:
        self._moved(link.source_id, link.golden_id)
        if new and self.links.get(link.source_id) is None:
            now = utc_now()
            self.new_links.append({
                "source_id": link.source_id, "source": link.source, "golden_id": link.golden_id,
                "grade": link.grade, "score": float(link.score), "rule": link.rule[:64],
                "decider": link.decider[:160], "features": link.features.to_json(),
                "digest": link.digest, "updated": now})
            self._remember(replace(link, updated=now))
            return
        self._write_links(tx)
        put_link(tx, link, new=new)
        self.links.pop(link.source_id, None)  # read again when next asked

    def drop_link(self, tx: Any, source_id: str) -> None:
        self._moved(source_id, None)
        self._write_links(tx)
        tx.conn.execute(delete(identity_links).where(identity_links.c.source_id == source_id))
        self.links[source_id] = None
        self.set_keys(tx, source_id, [])

    def record(self, tx: Any, action: str, *, decider: str, source_id: str | None = None,
               golden_id: str | None = None, previous_golden: str | None = None,
               grade: str | None = None, score: float | None = None, rule: str | None = None,
               reason: str | None = None, request_id: str | None = None) -> None:
        self.history.append(_history_row(action, decider, source_id, golden_id,
                                         previous_golden, grade, score, rule, reason,
                                         request_id))

    # -- blocking -----------------------------------------------------------------------------
    def _load(self, tx: Any, keys: Iterable[str]) -> None:
        """Read the buckets of keys not read yet, as the batch's replaced keys leave them.

        A bucket wider than the largest usable one plus the batch's size stays too wide
        whatever the batch does, so only its size is read.
        """
        todo = sorted({k for k in keys if k not in self.buckets and k not in self.wide})
        if not todo:
            return
        b = identity_blocks.c
        small: list[str] = []
        sizes: dict[str, int] = {}
        for chunk in _chunks(todo):
            for key, size in tx.conn.execute(select(b.key, func.count())
                                             .where(b.key.in_(chunk)).group_by(b.key)):
                sizes[key] = size
        for key in todo:
            if sizes.get(key, 0) > self.max_bucket + self.size:
                self.wide.add(key)
            else:
                self.buckets[key] = set()
                if sizes.get(key, 0):
                    small.append(key)
        for chunk in _chunks(small):
            for row in tx.conn.execute(select(b.key, b.source_id).where(b.key.in_(chunk))):
                if row.source_id not in self.changed:
                    self.buckets[row.key].add(row.source_id)
                    self.keys_of.setdefault(row.source_id, set()).add(row.key)
        for pid, pkeys in self.changed.items():
            for key in pkeys:
                if key in todo and key in self.buckets:
                    self.buckets[key].add(pid)

    def set_keys(self, tx: Any, source_id: str, keys: Sequence[str]) -> None:
        old = self.changed[source_id] if source_id in self.changed else self.keys_of.pop(
            source_id, set())
        for key in old:
            if key in self.buckets:
                self.buckets[key].discard(source_id)
        self.changed[source_id] = list(keys)
        for key in keys:
            if key in self.buckets:
                self.buckets[key].add(source_id)

    def candidates(self, tx: Any, keys: Sequence[str], *, exclude: str | None,
                   max_bucket: int) -> list[str]:
        if not keys:
            return []
        self._load(tx, keys if self.primed else [*self.wanted(), *keys])
        self.primed = True
        found: set[str] = set()
        for key in keys:
            members_ = self.buckets.get(key)
            if key in self.wide or not members_ or len(members_) > max_bucket:
                continue
            found |= members_
        return sorted(sid for sid in found if sid != exclude)

    # -- review queue -------------------------------------------------------------------------
    def open_reviews(self, tx: Any) -> list[Review]:
        if self.reviews is None:
            self.reviews = open_reviews(tx)
        return list(self.reviews)

    def queue_review(self, tx: Any, source_id: str, candidate_id: str, score: float,
                     probability: float, rule: str, levels: dict[str, str]) -> str | None:
        self.reviews = None
        return queue_review(tx, source_id, candidate_id, score, probability, rule, levels)

    def close_review(self, tx: Any, item_id: str, status: str, decider: str,
                     reason: str | None) -> None:
        close_review(tx, item_id, status, decider, reason)
        if self.reviews is not None:
            self.reviews = [r for r in self.reviews if r.id != item_id]


__all__ = [
    "ALGORITHM", "Batch", "Direct", "Link", "Review", "all_decisions", "all_links", "candidates", "close_review",
    "count_open_reviews", "decisions_for", "drop_decisions_between", "drop_link",
    "drop_open_reviews", "get_link", "get_links", "get_review", "golden_of", "history",
    "is_golden_id", "list_reviews", "member_ids", "members", "members_of", "open_reviews", "patient_rows",
    "put_decision", "put_link", "queue_review", "record", "replace_all_keys", "set_keys",
]
