"""The identity service: golden Patients across agencies, kept current on every ingest.

    resolve_in(tx, patient)   match one source Patient inside the caller's transaction
    resolve_many_in(tx, ...)  match several in order, golden Patients rewritten once (ingest)
    rebuild()                 recompute every link from everything stored; decisions kept
    match(resource, ...)      Patient/$match: candidates graded certain/probable/possible
    everything(id, ...)       Patient/$everything: the child's resources across agencies
    review/decide/split/merge a person's decisions, which always win over the algorithm

Golden Patients are owned by the gateway itself (agency tag `gateway`), so every agency reads
them as it reads any Patient, and only the identity service writes them. Every change to a link is
written to the link history and to an AuditEvent in the same transaction.
"""
from __future__ import annotations

import functools
import itertools
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from gateway.config import Settings
from gateway.errors import BadRequest, Conflict, Forbidden, ResourceNotFound
from gateway.fhir.service import FhirService, valid_id
from gateway.identity import store
from gateway.identity.blocking import blocking_keys
from gateway.identity.features import Features, extract, is_golden
from gateway.identity.golden import Member, compose, retired
from gateway.identity.matching import GRADE_RANK, Comparison, MatchModel, compare
from gateway.identity.national import NOT_CONNECTED, NationalLookup, NationalPart, outcome
from gateway.identity.report import LinkageReport, build_report
from gateway.security.audit import AuditContext, build_event, current_audit
from gateway.security.context import Caller, acting_as, current_caller
from gateway.store.base import StoredResource
from vocab import systems

GATEWAY = "gateway"
LOCK = "identity"
NAMESPACE = uuid.UUID("5b0f7c1e-3f0e-4c59-9d1c-6b8a2f4e7a10")
DETERMINISTIC = ("local-id", "nhs-number", "upn", "manual")
MAX_REVIEWS_PER_RECORD = 3
DIRECT = store.Direct()


@dataclass(frozen=True)
class Resolution:
    """Where one source Patient ended up."""

    source_id: str
    golden_id: str
    grade: str
    score: float
    rule: str
    changed: bool
    reviews: tuple[str, ...] = ()


@dataclass
class RebuildSummary:
    """What a rebuild found and changed."""

    sources: int = 0
    goldens: int = 0
    pairs_compared: int = 0
    moved: int = 0
    retired: int = 0
    review_open: int = 0
    skipped_buckets: int = 0


@dataclass(frozen=True)
class MatchHit:
    """One $match result: a Patient (golden when linked), its grade and probability."""

    stored: StoredResource
    grade: str
    probability: float
    rule: str


@dataclass
class EverythingPage:
    """One page of Patient/$everything."""

    focal: str
    entries: list[StoredResource]
    total: int
    offset: int
    count: int
    national: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Refresh:
    """Golden Patients to rewrite once a batch of resolutions ends, and retired ones' heirs.

    Also what the batch read up front: which of its Patients had a link before it began, and
    a person's decisions about them (resolving never writes decisions).
    """

    golden_ids: set[str] = field(default_factory=set)
    successors: dict[str, str] = field(default_factory=dict)
    linked_before: set[str] | None = None
    decisions: list[tuple[str, str, str]] | None = None
    resolved: set[str] = field(default_factory=set)
    db: store.Direct = field(default_factory=store.Direct)
    stored: dict[tuple[str, str], StoredResource] | None = None
    features: dict[str, Features] = field(default_factory=dict)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # stored, parsed
    locked: bool = False

    def unlinked(self, pid: str) -> bool:
        """Return True when the Patient certainly has no link yet (none read, none made)."""
        return (self.linked_before is not None and pid not in self.linked_before
                and pid not in self.resolved)

    def decisions_for(self, pid: str) -> list[tuple[str, str, str]] | None:
        """Return the decisions touching one Patient, when they were read up front."""
        if self.decisions is None:
            return None
        return [d for d in self.decisions if pid in (d[0], d[1])]


class _Clusters:
    """Union-find over source Patients that refuses unions a person has forbidden."""

    def __init__(self, ids: Iterable[str], apart: dict[str, set[str]]) -> None:
        self.parent = {i: i for i in ids}
        self.members = {i: {i} for i in self.parent}
        self.apart = apart

    def find(self, x: str) -> str:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        small, large = sorted((self.members[ra], self.members[rb]), key=len)
        if any(self.apart.get(x, set()) & large for x in small):
            return False
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra] |= self.members.pop(rb)
        return True

    def groups(self) -> list[list[str]]:
        return sorted(sorted(m) for m in self.members.values())


def _better(a: tuple[Comparison, str], b: tuple[Comparison, str] | None) -> bool:
    return b is None or (a[0].rank, a[0].weight, b[1]) > (b[0].rank, b[0].weight, a[1])


def _decider(caller: Caller) -> str:
    who = f"person:{caller.agency}/{caller.client_id}"
    return f"{who}/{caller.user}" if caller.user else who


def _request_id() -> str | None:
    ctx = current_audit()
    return ctx.request_id if ctx else None


@contextmanager
def as_gateway() -> Iterator[None]:
    """Act as the gateway itself: golden Patients are the gateway's own records."""
    with acting_as(Caller.internal(GATEWAY)):
        yield


class IdentityService:
    """Golden records, $match, $everything, the review queue and the linkage report."""

    def __init__(self, fhir: FhirService, settings: Settings, *, model: MatchModel | None = None,
                 national: NationalLookup | None = None) -> None:
        self.fhir = fhir
        self.settings = settings
        self.policy = fhir.policy
        self.model = model or MatchModel.load()
        self.national = national or NationalLookup(settings)
        # Batches of resolutions (ingest chunks) read the identity tables once and write them
        # together (store.Batch); False resolves them with a statement per read and write.
        self.batched = True

    # -- authorisation --------------------------------------------------------------------------
    def require_reader(self, interaction: str = "read") -> Caller:
        """Raise 403 unless the caller may read (or search) Patients; return the caller."""
        caller = current_caller()
        self.policy.require_scope(caller, "Patient", interaction)
        if not caller.system and not self.policy.agency(caller.agency).read_rules("Patient"):
            raise Forbidden(f"the {caller.agency} agency may not read Patients")
        return caller

    def require_steward(self) -> Caller:
        """Raise 403 unless the caller may change identity links (Patient write)."""
        caller = current_caller()
        self.policy.require_scope(caller, "Patient", "update")
        if not caller.system and "Patient" not in self.policy.agency(caller.agency).write:
            raise Forbidden(f"the {caller.agency} agency may not change identity links")
        return caller

    # -- golden Patients ----------------------------------------------------------------------
    def _new_golden_id(self, tx: Any, seed: str, taken: set[str] | None = None,
                       db: store.Direct = DIRECT) -> str:
        for n in itertools.count():
            gid = str(uuid.uuid5(NAMESPACE, f"golden/{seed}/{n}" if n else f"golden/{seed}"))
            if taken is not None and gid in taken:
                continue
            if not db.is_golden_id(tx, gid):
                return gid
        raise AssertionError("unreachable")  # pragma: no cover

    def _refresh(self, tx: Any, golden_ids: Iterable[str],
                 successors: dict[str, str] | None = None,
                 later: _Refresh | None = None, read: _Refresh | None = None) -> None:
        """Rewrite golden Patients from their members; retire the ones left empty.

        The members of every golden Patient are read at once, and the rewritten ones stored
        together. With `later`, the golden Patients are only noted, to be rewritten once when
        the batch of resolutions that collects them ends. `read` is a batch that read its
        Patients up front (resolving writes golden Patients only): its members are not read
        or parsed again.
        """
        if later is not None:
            later.golden_ids.update(golden_ids)
            later.successors.update(successors or {})
            return
        gids = sorted(set(golden_ids))
        if not gids:
            return
        links_of = store.members_of(tx, gids)
        stored: dict[str, StoredResource] = {}
        bodies: dict[str, dict[str, Any]] = {}
        wanted = [link.source_id for gid in gids for link in links_of.get(gid, ())]
        if read is not None and read.stored is not None:
            for sid in wanted:
                known = read.stored.get(("Patient", sid))
                body = read.bodies.get(sid)
                if known is not None and body is not None and not known.deleted:
                    stored[sid], bodies[sid] = known, body
        stored.update((s.res_id, s) for s in tx.fetch([("Patient", sid) for sid in wanted
                                                        if sid not in stored]))
        with as_gateway():
            current = tx.get_many_for_update(("Patient", gid) for gid in gids
                                             if links_of.get(gid))
            for gid in gids:
                members = []
                for link in links_of.get(gid, ()):
                    found = stored.get(link.source_id)
                    if found is not None and found.content:
                        body = bodies.get(found.res_id)
                        members.append(Member(found.res_id, orjson.loads(found.content)
                                              if body is None else body,
                                              link.features, found.last_updated))
                if members:
                    self.fhir._stage_update_in(tx, current, "Patient", gid,
                                               compose(gid, members))
                else:
                    self._retire(tx, gid, (successors or {}).get(gid))
        tx.flush()

    def _retire(self, tx: Any, golden_id: str, successor: str | None) -> None:
        previous = tx.get("Patient", golden_id)
        if previous is None or previous.deleted or previous.content is None:
            return
        body = orjson.loads(previous.content)
        if not is_golden(body):
            return
        if successor:
            self.fhir._update_in(tx, "Patient", golden_id,
                                 retired(golden_id, successor, body), None)
        else:
            self.fhir._delete_in(tx, "Patient", golden_id, None)

    def _move(self, tx: Any, link: store.Link, golden_id: str, *, action: str, decider: str,
              grade: str, score: float, rule: str, reason: str | None = None,
              new: bool = False, db: store.Direct = DIRECT) -> store.Link:
        moved = replace(link, golden_id=golden_id, grade=grade, score=score, rule=rule,
                        decider=decider)
        db.put_link(tx, moved, new=new)
        db.record(tx, action, decider=decider, source_id=link.source_id, golden_id=golden_id,
                     previous_golden=link.golden_id if link.golden_id != golden_id else None,
                     grade=grade, score=score, rule=rule, reason=reason,
                     request_id=_request_id())
        return moved

    def _supersede(self, tx: Any, source_ids: Sequence[str], db: store.Direct = DIRECT) -> None:
        """Close open review items whose two records now share a golden Patient."""
        items = [r for r in db.open_reviews(tx)
                 if r.source_id in source_ids or r.candidate_id in source_ids]
        goldens = db.golden_of(tx, [i for r in items for i in (r.source_id, r.candidate_id)])
        for item in items:
            g = goldens.get(item.source_id)
            if g is not None and g == goldens.get(item.candidate_id):
                db.close_review(tx, item.id, "superseded", store.ALGORITHM, None)

    # -- matching one record ------------------------------------------------------------------
    def _ranked(self, tx: Any, pid: str | None, features: Features, *,
                hide_location: bool = False,
                decisions: list[tuple[str, str, str]] | None = None,
                db: store.Direct = DIRECT) -> list[tuple[str, Comparison, str]]:
        """Return (golden, best comparison, best candidate) for each golden a record may join.

        `decisions` are the decisions touching `pid` when the caller has read them already.
        """
        cands = db.candidates(tx, blocking_keys(features), exclude=pid,
                              max_bucket=self.model.max_bucket)
        links = db.get_links(tx, cands)
        forced: set[str] = set()
        apart: set[str] = set()
        if pid is not None:
            for left, right, decision in (store.decisions_for(tx, [pid]) if decisions is None
                                          else decisions):
                other = right if left == pid else left
                (forced if decision == "link" else apart).add(other)
        apart_goldens = set(db.golden_of(tx, sorted(apart)).values())
        best: dict[str, tuple[Comparison, str]] = {}
        for cid, link in links.items():
            if link.golden_id in apart_goldens:
                continue
            mine, theirs = features, link.features
            if hide_location and theirs.restricted:
                mine = replace(mine, postcodes=(), lines=())
                theirs = replace(theirs, postcodes=(), lines=())
            found = compare(mine, theirs, self.model)
            if cid in forced:
                found = Comparison(found.levels, found.weight, "certain", "manual", 1.0)
            if _better((found, cid), best.get(link.golden_id)):
                best[link.golden_id] = (found, cid)
        for gid_of in db.golden_of(tx, sorted(forced - set(links))).items():
            cid, gid = gid_of
            if gid not in apart_goldens:
                best[gid] = (Comparison({}, self.model.thresholds.certain, "certain", "manual",
                                        1.0), cid)
        ranked = [(g, c, cid) for g, (c, cid) in best.items()]
        ranked.sort(key=lambda r: (-r[1].rank, -r[1].weight, r[0]))
        return ranked

    def _apart_between(self, tx: Any, group_a: Sequence[str], group_b: Sequence[str]) -> bool:
        b = set(group_b)
        for left, right, decision in store.decisions_for(tx, group_a):
            if decision == "keep-apart" and ((left in b and right not in b) or
                                             (right in b and left not in b)):
                return True
        return False

    def resolve_in(self, tx: Any, patient: dict[str, Any]) -> Resolution | None:
        """Link one source Patient to its golden Patient, inside the caller's transaction.

        Call it right after the Patient is stored. Returns None for anything that is not a
        stored source Patient. A Patient whose matching features did not change since it was
        last resolved costs two indexed reads and changes nothing.
        """
        return self.resolve_many_in(tx, [patient])[0]

    def resolve_many_in(self, tx: Any, patients: Sequence[dict[str, Any]],
                        ) -> list[Resolution | None]:
        """Resolve stored source Patients one after the other, inside the caller's transaction.

        Ingest calls it once per stored chunk. Each Patient is matched and linked as
        `resolve_in` would, in order; the golden Patients they touch are rewritten once, at the
        end, from their final members, rather than after each Patient.
        """
        later = _Refresh()
        if len(patients) > 1:
            pids = list(dict.fromkeys(p["id"] for p in patients if isinstance(p, dict)
                                      and isinstance(p.get("id"), str) and valid_id(p["id"])))
            tx.lock(LOCK)  # what is read up front stays true until the transaction ends
            if self.batched:
                self._begin_batch(tx, later, pids)
            later.linked_before = set(later.db.golden_of(tx, pids))
            later.decisions = store.decisions_for(tx, pids)
        out = [self._resolve_in(tx, patient, later) for patient in patients]
        later.db.flush(tx)
        self._refresh(tx, later.golden_ids, later.successors, read=later)
        return out

    def _begin_batch(self, tx: Any, later: _Refresh, pids: Sequence[str]) -> None:
        """Read the batch's source Patients at once and hold the identity tables per batch."""
        later.locked = True
        later.stored = tx.get_many_for_update(("Patient", pid) for pid in pids)
        for (_, pid), found in later.stored.items():
            if not found.deleted and found.content is not None:
                body = orjson.loads(found.content)
                if not is_golden(body):
                    later.features[pid] = extract(body)
                    later.bodies[pid] = body
        later.db = store.Batch(pids, functools.partial(self._batch_keys, later, pids),
                               [self._golden_id(pid) for pid in pids], self.model.max_bucket)

    @staticmethod
    def _golden_id(seed: str) -> str:
        return str(uuid.uuid5(NAMESPACE, f"golden/{seed}"))

    def _batch_keys(self, later: _Refresh, pids: Sequence[str]) -> set[str]:
        """Return the blocking keys of the batch's Patients that may need candidates."""
        keys: set[str] = set()
        for pid in pids:
            features = later.features.get(pid)
            if features is None:
                continue
            link = later.db.links.get(pid) if isinstance(later.db, store.Batch) else None
            if link is None or link.digest != features.digest():
                keys.update(blocking_keys(features))
        return keys

    def _resolve_in(self, tx: Any, patient: dict[str, Any],
                    later: _Refresh) -> Resolution | None:
        if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
            return None
        pid = patient.get("id")
        if not isinstance(pid, str) or not valid_id(pid):
            return None
        db = later.db
        stored = (tx.get("Patient", pid) if later.stored is None
                  else later.stored.get(("Patient", pid)))
        if stored is None:
            return None
        if not later.locked:
            tx.lock(LOCK)
        if stored.deleted or stored.content is None:
            self._forget_in(tx, pid, later)
            return None
        features = later.features.get(pid)
        if features is None:
            body = orjson.loads(stored.content)
            if is_golden(body):
                return None
            features = extract(body)
        digest = features.digest()
        current = None if later.unlinked(pid) else db.get_link(tx, pid)
        later.resolved.add(pid)
        if current is not None and current.digest == digest:
            return Resolution(pid, current.golden_id, current.grade, current.score,
                              current.rule, False)
        db.set_keys(tx, pid, blocking_keys(features))
        if current is not None and current.by_person:
            db.put_link(tx, replace(current, features=features, digest=digest))
            self._refresh(tx, [current.golden_id], later=later)
            return Resolution(pid, current.golden_id, current.grade, current.score,
                              current.rule, True)
        return self._place(tx, pid, features, digest, current, later)

    def _place(self, tx: Any, pid: str, features: Features, digest: str,
               current: store.Link | None, later: _Refresh) -> Resolution:
        db = later.db
        ranked = self._ranked(tx, pid, features, decisions=later.decisions_for(pid), db=db)
        target: tuple[str, Comparison, str] | None = None
        if ranked and ranked[0][1].rank >= GRADE_RANK["probable"]:
            target = ranked[0]
        old = current.golden_id if current else None
        touched: set[str] = {old} if old else set()
        if target is None:
            alone = old is not None and [m.source_id for m in db.members(tx, old)] == [pid]
            golden = old if alone and old else self._new_golden_id(tx, pid, db=db)
            grade, score, rule = "certain", 0.0, "new-record"
        else:
            golden, found, _ = target
            grade, score, rule = found.grade, found.weight, found.rule
        link = current or store.Link(pid, features.source, golden, grade, score, rule,
                                     store.ALGORITHM, features, digest)
        link = replace(link, features=features, digest=digest, source=features.source)
        if old != golden or current is None:
            self._move(tx, replace(link, golden_id=old or golden), golden,
                       action="link" if current is None else "move", decider=store.ALGORITHM,
                       grade=grade, score=score, rule=rule, new=current is None, db=db)
        else:
            db.put_link(tx, replace(link, grade=grade, score=score, rule=rule))
        touched.add(golden)
        reviews: list[str] = []
        # A golden Patient this record leaves empty is replaced by the one it joined.
        successors: dict[str, str] = {old: golden} if old and old != golden else {}
        queued = 0
        for gid, found, cid in ranked:
            if gid == golden:
                continue
            if target is not None and found.grade == "certain" and found.rule in DETERMINISTIC:
                mine = [m.source_id for m in db.members(tx, golden)]
                theirs = [m.source_id for m in db.members(tx, gid)]
                if not self._apart_between(tx, mine, theirs):
                    for other in db.members(tx, gid):
                        self._move(tx, other, golden, action="merge", decider=store.ALGORITHM,
                                   grade=found.grade, score=found.weight, rule=found.rule, db=db)
                    successors[gid] = golden
                    touched.add(gid)
                    continue
            if found.rank >= GRADE_RANK["possible"] and queued < MAX_REVIEWS_PER_RECORD:
                item = db.queue_review(tx, pid, cid, found.weight, found.probability,
                                          found.rule, found.levels)
                queued += 1
                if item:
                    reviews.append(item)
        merged = any(g != old for g in successors)
        self._refresh(tx, touched, successors, later)
        if target is not None:
            self._supersede(tx, [pid, *[m.source_id for m in db.members(tx, golden)]]
                            if merged else [pid], db)
        return Resolution(pid, golden, grade, score, rule, True, tuple(reviews))

    def _forget_in(self, tx: Any, pid: str, later: _Refresh | None = None) -> None:
        db = later.db if later is not None else DIRECT
        link = db.get_link(tx, pid)
        if link is None:
            return
        db.drop_link(tx, pid)
        db.record(tx, "unlink", decider=store.ALGORITHM, source_id=pid,
                     previous_golden=link.golden_id, reason="the source Patient was deleted",
                     request_id=_request_id())
        self._refresh(tx, [link.golden_id], later=later)

    def resolve(self, patient_id: str) -> Resolution | None:
        """Resolve one stored Patient in its own transaction (as the gateway)."""
        with as_gateway():
            return self.fhir._store_write(  # type: ignore[no-any-return]
                lambda tx: self.resolve_in(tx, {"resourceType": "Patient", "id": patient_id}))

    # -- rebuild ------------------------------------------------------------------------------
    def rebuild(self) -> RebuildSummary:
        """Recompute every link from every stored Patient; a person's decisions are kept.

        Deterministic and independent of the order records arrived in: pairs are scored once,
        then records are joined in order of evidence (a person's link, certain, probable), never
        across a person's keep-apart decision.
        """
        with as_gateway():
            return self.fhir._store_write(self._rebuild_in)  # type: ignore[no-any-return]

    def _rebuild_in(self, tx: Any) -> RebuildSummary:
        tx.lock(LOCK)
        summary = RebuildSummary()
        features: dict[str, Features] = {}
        for pid, content in store.patient_rows(tx):
            body = orjson.loads(content)
            if not is_golden(body):
                features[pid] = extract(body)
        summary.sources = len(features)
        buckets: dict[str, list[str]] = {}
        key_rows = []
        for pid in sorted(features):
            for key in blocking_keys(features[pid]):
                buckets.setdefault(key, []).append(pid)
                key_rows.append({"key": key, "source_id": pid})
        store.replace_all_keys(tx, key_rows)
        pairs: set[tuple[str, str]] = set()
        for ids in buckets.values():
            if len(ids) > self.model.max_bucket:
                summary.skipped_buckets += 1
                continue
            pairs.update(itertools.combinations(ids, 2))
        summary.pairs_compared = len(pairs)
        scored = {p: compare(features[p[0]], features[p[1]], self.model) for p in sorted(pairs)}
        decisions = [d for d in store.all_decisions(tx) if d[0] in features and d[1] in features]
        apart: dict[str, set[str]] = {}
        for left, right, decision in decisions:
            if decision == "keep-apart":
                apart.setdefault(left, set()).add(right)
                apart.setdefault(right, set()).add(left)
        linked = {(left, right) for left, right, d in decisions if d == "link"}
        clusters = _Clusters(features, apart)
        for left, right in sorted(linked):
            clusters.union(left, right)
        for grade in ("certain", "probable"):
            ordered = sorted((p for p, c in scored.items() if c.grade == grade),
                             key=lambda p: (-scored[p].weight, p))
            for a, b in ordered:
                clusters.union(a, b)
        groups = clusters.groups()
        old = {link.source_id: link for link in store.all_links(tx)}
        taken: set[str] = set()
        assigned: dict[str, str] = {}
        # Keep golden ids stable: a cluster keeps the golden most of its records already had.
        votes = []
        for group in groups:
            counts = Counter(old[s].golden_id for s in group if s in old)
            for gid, n in counts.items():
                votes.append((-n, gid, group[0]))
        for _, gid, seed in sorted(votes):
            if seed not in assigned and gid not in taken:
                assigned[seed] = gid
                taken.add(gid)
        for group in groups:
            if group[0] not in assigned:
                gid = self._new_golden_id(tx, group[0], taken)
                assigned[group[0]] = gid
                taken.add(gid)
        store.drop_open_reviews(tx)
        touched: set[str] = set()
        for group in groups:
            gid = assigned[group[0]]
            touched.add(gid)
            for pid in group:
                best: tuple[Comparison, str] | None = None
                for other in group:
                    if other == pid:
                        continue
                    pair = (pid, other) if pid < other else (other, pid)
                    found = scored.get(pair)
                    if pair in linked:
                        found = Comparison(found.levels if found else {},
                                           found.weight if found else 0.0, "certain",
                                           "manual", 1.0)
                    if found is not None and _better((found, other), best):
                        best = (found, other)
                if best is None:
                    grade, score, rule = "certain", 0.0, "new-record"
                    if len(group) > 1:
                        grade, rule = "probable", "transitive"
                else:
                    grade, score, rule = best[0].grade, best[0].weight, best[0].rule
                previous = old.get(pid)
                f = features[pid]
                decider = previous.decider if previous and previous.by_person and \
                    previous.golden_id == gid else store.ALGORITHM
                link = store.Link(pid, f.source, gid, grade, score, rule, decider, f, f.digest())
                if previous is None or previous.golden_id != gid:
                    self._move(tx, replace(link, golden_id=previous.golden_id if previous
                                           else gid), gid, action="rebuild", decider=decider,
                               grade=grade, score=score, rule=rule, new=previous is None)
                    summary.moved += 1
                    if previous is not None:
                        touched.add(previous.golden_id)
                else:
                    store.put_link(tx, link)
        for pid, link in old.items():
            if pid not in features:
                store.drop_link(tx, pid)
                touched.add(link.golden_id)
        queued: Counter[str] = Counter()
        for (a, b), found in sorted(scored.items(), key=lambda kv: (-kv[1].weight, kv[0])):
            if found.grade != "possible" or clusters.find(a) == clusters.find(b) \
                    or (a, b) in linked or b in apart.get(a, set()):
                continue
            if queued[a] >= MAX_REVIEWS_PER_RECORD or queued[b] >= MAX_REVIEWS_PER_RECORD:
                continue
            queued[a] += 1
            queued[b] += 1
            store.queue_review(tx, a, b, found.weight, found.probability, found.rule,
                               found.levels)
        seed_of = {pid: group[0] for group in groups for pid in group}
        former: dict[str, Counter[str]] = {}
        for pid, link in old.items():
            if link.golden_id not in taken and pid in features:
                former.setdefault(link.golden_id, Counter())[assigned[seed_of[pid]]] += 1
        successors = {g: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0]
                      for g, c in former.items()}
        summary.retired = len([g for g in touched if g not in taken])
        self._refresh(tx, touched, successors)
        summary.goldens = len(groups)
        summary.review_open = store.count_open_reviews(tx)
        return summary

    # -- Patient/$match -------------------------------------------------------------------------
    def match(self, resource: dict[str, Any], *, only_certain: bool = False,
              count: int = 10) -> list[MatchHit]:
        """Return the golden Patients a Patient resource may be, best first, through policy."""
        caller = current_caller()
        self.policy.require_scope(caller, "Patient", "search")
        features = extract(resource)
        hide = self.policy.hides_shielded_location(caller, {"address"})

        def _run(tx: Any) -> tuple[list[tuple[str, Comparison, str]], list[StoredResource]]:
            ranked = [r for r in self._ranked(tx, None, features, hide_location=hide)
                      if r[1].rank >= GRADE_RANK["possible"]]
            if only_certain:
                ranked = [r for r in ranked if r[1].grade == "certain"]
                if len(ranked) > 1:
                    ranked = []  # several certain matches: none of them is certain
            ranked = ranked[:count]
            return ranked, tx.fetch([("Patient", g) for g, _, _ in ranked])

        ranked, stored = self.fhir._store_read(_run)
        by_id = {s.res_id: s for s in stored}
        hits = []
        for gid, found, _ in ranked:
            visible = self.fhir._visible(by_id.get(gid))
            if visible is not None and visible.content is not None:
                hits.append(MatchHit(visible, found.grade, found.probability, found.rule))
        return hits

    # -- Patient/$everything --------------------------------------------------------------------
    def everything(self, patient_id: str, *, since: str | None = None,
                   types: Sequence[str] | None = None, count: int = 20,
                   offset: int = 0) -> EverythingPage:
        """Return one page of every resource about a child that the caller may see.

        On a golden Patient: the golden Patient, every source Patient linked to it, every
        resource referring to any of them, and what those refer to (practitioners, teams,
        schools). On any other Patient: the same around that Patient alone. A resource the
        caller may not see is left out before counting, so the page leaves no trace of it.
        """
        from gateway.security.scopes import allows
        from gateway.store.sql import from_instant

        caller = current_caller()
        self.policy.require_scope(caller, "Patient", "read")
        focal = self.fhir.read("Patient", patient_id)
        since_ts = None
        if since:
            try:
                since_ts = from_instant(since)
            except ValueError as exc:
                raise BadRequest("_since must be a FHIR instant") from exc
        wanted = set(types) if types else None
        if wanted:
            for name in wanted:
                self.fhir.resource_type(name)

        def _run(tx: Any) -> list[StoredResource]:
            patients = [patient_id] + store.member_ids(tx, [patient_id]).get(patient_id, [])
            return compartment(tx, patients)

        found = self.fhir._store_read(_run)
        visible: list[StoredResource] = []
        for item in found:
            if item.res_type == "AuditEvent" or (wanted and item.res_type not in wanted):
                continue
            if not caller.system and not allows(caller.scopes, item.res_type, "r"):
                continue
            if since_ts and item.last_updated[:-1] + "000" < since_ts:
                continue
            if item.res_id == patient_id and item.res_type == "Patient":
                visible.append(focal)
                continue
            content = self.policy.view(caller, item.res_type, item.content or "")
            if content is not None:
                visible.append(item if content is item.content else replace(item,
                                                                             content=content))
        order = {"Patient": 0}
        visible.sort(key=lambda s: (s.res_id != patient_id, order.get(s.res_type, 1),
                                    s.res_type, s.last_updated, s.res_id))
        page = visible[offset:offset + count]
        ctx = current_audit()
        for item in page:
            if ctx is not None:
                ctx.touch(f"{item.res_type}/{item.res_id}")
                if item.content and self.policy.broke_glass(caller, item.res_type, item.content):
                    ctx.break_glass = True
        return EverythingPage(patient_id, page, len(visible), offset, count)

    # -- national enrichment -----------------------------------------------------------------
    def _audit_national(self, caller: Caller, service: str, subject: str | None,
                        part: NationalPart) -> None:
        if self.fhir.audit is None:
            return
        ctx = AuditContext("national", res_type="Patient", request_id=_request_id(),
                           description=f"{service} lookup for the identity service")
        if subject:
            ctx.touch(subject)
        failed = part.outcome is not None and any(
            i.get("severity") in ("error", "fatal") for i in part.outcome["issue"])
        self.fhir.audit.record(build_event(caller, ctx, "serious" if failed else "success",
                                           request_id=_request_id()))

    def _visible_national(self, caller: Caller, part: NationalPart,
                          labels: list[dict[str, Any]]) -> NationalPart:
        shown = []
        for resource in part.resources:
            if labels:
                resource = {**resource, "meta": {**resource.get("meta", {}),
                                                 "security": labels}}
            content = self.policy.view(caller, resource["resourceType"],
                                       orjson.dumps(resource).decode("utf-8"))
            if content is not None:
                shown.append(orjson.loads(content))
        return NationalPart(part.service, shown, part.outcome)

    def national_view(self, golden: StoredResource) -> list[NationalPart]:
        """Ask the national services about a child, live: PDS demographics, CP-IS plans.

        Services the caller's agency may not call, services this gateway is not connected to,
        and services that fail each give an OperationOutcome part; the rest give resources
        marked with their source, shown through the caller's policy.
        """
        from connectors.cpis import Accessor

        caller = current_caller()
        body = orjson.loads(golden.content or "{}")
        labels = [label for label in (body.get("meta") or {}).get("security") or ()
                  if isinstance(label, dict) and label.get("system") == systems.CONFIDENTIALITY]
        numbers = [i for i in body.get("identifier") or () if isinstance(i, dict)
                   and i.get("system") == systems.NHS_NUMBER and isinstance(i.get("value"), str)]
        numbers.sort(key=lambda i: not i.get("extension"))
        subject = f"Patient/{golden.res_id}"
        parts: list[NationalPart] = []
        for service in ("pds", "cpis"):
            if not self.policy.may_call_national(caller, service):
                parts.append(NationalPart(service, outcome=outcome(
                    service, "information", "forbidden",
                    "this agency may not call the service")))
                continue
            if not numbers:
                parts.append(NationalPart(service, outcome=outcome(
                    service, "information", "not-found",
                    "no NHS number is known for this child; the service was not asked")))
                continue
            nhs = numbers[0]["value"]
            if service == "pds":
                part = self.national.pds_by_nhs_number(nhs, correlation_id=_request_id())
            else:
                s = self.settings
                accessor = Accessor(user_id=(caller.user or caller.client_id)[:64],
                                    name=caller.client_id[:64], role=caller.agency,
                                    organisation_ods_code=s.la_ods_code,
                                    organisation_name=s.la_name)
                part = self.national.cpis_flags(nhs, subject, accessor,
                                                correlation_id=_request_id())
            self._audit_national(caller, service, subject, part)
            parts.append(self._visible_national(caller, part, labels))
        for service, text in NOT_CONNECTED.items():
            parts.append(NationalPart(service, outcome=outcome(
                service, "information", "not-supported", text)))
        return parts

    def national_match(self, resource: dict[str, Any]) -> list[tuple[NationalPart, str]]:
        """Ask PDS for the person a $match resource describes; grade what it answers."""
        caller = current_caller()
        if not self.policy.may_call_national(caller, "pds"):
            return [(NationalPart("pds", outcome=outcome(
                "pds", "information", "forbidden", "this agency may not call the service")),
                "")]
        f = extract(resource)
        if f.nhs:
            part = self.national.pds_by_nhs_number(f.nhs[0], correlation_id=_request_id())
            grade = "certain"
        elif f.birth_date and f.gender in ("male", "female") and f.family:
            name = next((n for n in resource.get("name") or () if isinstance(n, dict)), {})
            given = next(iter(name.get("given") or ()), None)
            part = self.national.pds_search(
                birth_date=f.birth_date, gender=f.gender,
                family=name.get("family") or f.family[0], given=given,
                postcode=f.postcodes[0] if f.postcodes else None,
                correlation_id=_request_id())
            grade = "probable"
        else:
            return [(NationalPart("pds", outcome=outcome(
                "pds", "information", "incomplete",
                "PDS needs an NHS number, or a date of birth, sex and family name")), "")]
        self._audit_national(caller, "pds", None, part)
        return [(self._visible_national(caller, part, []), grade)]

    # -- a person's decisions -----------------------------------------------------------------
    def _link_of(self, tx: Any, source_id: str) -> store.Link:
        link = store.get_link(tx, source_id) if valid_id(source_id) else None
        if link is None:
            raise ResourceNotFound(f"Patient/{source_id} is not a linked source Patient")
        return link

    def _merge_in(self, tx: Any, from_golden: str, into_golden: str, *, decider: str,
                  reason: str | None, action: str,
                  pair: tuple[str, str] | None = None) -> None:
        moving = store.members(tx, from_golden)
        staying = store.members(tx, into_golden)
        if not moving or not staying:
            raise ResourceNotFound("both Patients must be golden Patients with linked sources")
        store.drop_decisions_between(tx, [m.source_id for m in moving],
                                     [m.source_id for m in staying], "keep-apart")
        left, right = pair or (moving[0].source_id, staying[0].source_id)
        store.put_decision(tx, left, right, "link", decider, reason)
        for link in moving:
            self._move(tx, link, into_golden, action=action, decider=decider, grade="certain",
                       score=link.score, rule="manual", reason=reason)
        self._refresh(tx, [into_golden, from_golden], {from_golden: into_golden})
        self._supersede(tx, [m.source_id for m in moving])

    def _split_in(self, tx: Any, link: store.Link, *, decider: str, reason: str | None,
                  action: str) -> str:
        others = [m.source_id for m in store.members(tx, link.golden_id)
                  if m.source_id != link.source_id]
        for other in others:
            store.put_decision(tx, link.source_id, other, "keep-apart", decider, reason)
        if not others:
            return link.golden_id
        golden = self._new_golden_id(tx, link.source_id)
        self._move(tx, link, golden, action=action, decider=decider, grade="certain",
                   score=0.0, rule="manual", reason=reason)
        self._refresh(tx, [golden, link.golden_id])
        return golden

    def merge(self, from_golden: str, into_golden: str, reason: str | None = None) -> None:
        """Merge one golden Patient into another (a person's decision); the first is retired."""
        caller = self.require_steward()
        if from_golden == into_golden:
            raise BadRequest("a golden Patient cannot be merged into itself")
        decider = _decider(caller)

        def _run(tx: Any) -> None:
            tx.lock(LOCK)
            for gid in (from_golden, into_golden):
                if not valid_id(gid) or not store.is_golden_id(tx, gid):
                    raise ResourceNotFound(f"Patient/{gid} is not a golden Patient")
            self._merge_in(tx, from_golden, into_golden, decider=decider, reason=reason,
                           action="merge")

        self.fhir._store_write(_run)

    def split(self, source_id: str, reason: str | None = None) -> str:
        """Take a source Patient out of its golden Patient into a new one; return the new id."""
        caller = self.require_steward()
        decider = _decider(caller)

        def _run(tx: Any) -> str:
            tx.lock(LOCK)
            link = self._link_of(tx, source_id)
            return self._split_in(tx, link, decider=decider, reason=reason, action="split")

        return self.fhir._store_write(_run)  # type: ignore[no-any-return]

    def review_queue(self, status: str | None, count: int,
                     offset: int) -> tuple[list[dict[str, Any]], int]:
        """Return a page of review items (JSON-ready) and their number."""
        caller = current_caller()
        self.policy.require_scope(caller, "Patient", "read")

        def _run(tx: Any) -> tuple[list[dict[str, Any]], int]:
            items, total = store.list_reviews(tx, status, count, offset)
            goldens = store.golden_of(tx, [i for r in items for i in (r.source_id,
                                                                      r.candidate_id)])
            return [r.to_json(goldens) for r in items], total

        return self.fhir._store_read(_run)  # type: ignore[no-any-return]

    def decide(self, item_id: str, decision: str, reason: str | None = None) -> dict[str, Any]:
        """Apply a person's decision on a review item: link the two records or keep them apart."""
        caller = self.require_steward()
        if decision not in ("link", "keep-apart"):
            raise BadRequest("decision must be 'link' or 'keep-apart'")
        decider = _decider(caller)

        def _run(tx: Any) -> dict[str, Any]:
            tx.lock(LOCK)
            item = store.get_review(tx, item_id) if valid_id(item_id) else None
            if item is None:
                raise ResourceNotFound(f"review item {item_id} is not known")
            if item.status != "open":
                raise Conflict(f"review item {item_id} was already decided ({item.status})")
            mine = self._link_of(tx, item.source_id)
            theirs = self._link_of(tx, item.candidate_id)
            if decision == "link":
                if mine.golden_id != theirs.golden_id:
                    self._merge_in(tx, mine.golden_id, theirs.golden_id, decider=decider,
                                   reason=reason, action="review-link",
                                   pair=(mine.source_id, theirs.source_id))
                else:
                    store.put_decision(tx, mine.source_id, theirs.source_id, "link", decider,
                                       reason)
                status = "linked"
            else:
                store.put_decision(tx, mine.source_id, theirs.source_id, "keep-apart", decider,
                                   reason)
                if mine.golden_id == theirs.golden_id:
                    self._split_in(tx, mine, decider=decider, reason=reason,
                                   action="review-keep-apart")
                else:
                    store.record(tx, "review-keep-apart", decider=decider,
                                 source_id=mine.source_id, golden_id=mine.golden_id,
                                 grade="certainly-not", rule="manual", reason=reason,
                                 request_id=_request_id())
                status = "kept-apart"
            store.close_review(tx, item.id, status, decider, reason)
            goldens = store.golden_of(tx, [item.source_id, item.candidate_id])
            decided = store.get_review(tx, item.id)
            if decided is None:  # pragma: no cover - written above in this transaction
                raise ResourceNotFound(f"review item {item_id} is not known")
            return decided.to_json(goldens)

        return self.fhir._store_write(_run)  # type: ignore[no-any-return]

    def links(self, patient_id: str) -> list[dict[str, Any]]:
        """Return the links of a golden Patient (or of the golden Patient of a source)."""
        caller = current_caller()
        self.policy.require_scope(caller, "Patient", "read")
        self.fhir.read("Patient", patient_id)

        def _run(tx: Any) -> list[dict[str, Any]]:
            golden = patient_id
            own = store.get_link(tx, patient_id)
            if own is not None:
                golden = own.golden_id
            return [link.to_json() for link in store.members(tx, golden)]

        return self.fhir._store_read(_run)  # type: ignore[no-any-return]

    def history(self, patient_id: str, count: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """Return the link history of a source or golden Patient, newest first."""
        caller = current_caller()
        self.policy.require_scope(caller, "Patient", "read")
        self.fhir.read("Patient", patient_id)
        return self.fhir._store_read(  # type: ignore[no-any-return]
            lambda tx: store.history(tx, patient_id, count, offset))

    def report(self, truth: dict[tuple[str, str], str] | None = None) -> LinkageReport:
        """Return the linkage quality report (precision and recall when a truth is given)."""
        return self.fhir._store_read(  # type: ignore[no-any-return]
            lambda tx: build_report(tx, truth))


def compartment(tx: Any, patients: Sequence[str]) -> list[StoredResource]:
    """Return the Patients, every resource referring to them, and what those refer to."""
    from sqlalchemy import select

    from gateway.store.schema import idx_reference

    r = idx_reference.c
    keys: dict[tuple[str, str], None] = {("Patient", p): None for p in patients}
    inner: dict[tuple[str, str], None] = {}
    for start in range(0, len(patients), 500):
        chunk = list(patients[start:start + 500])
        # AuditEvents (the trail, not the record) keep their references in a table of their own.
        rows = tx.conn.execute(select(r.res_type, r.res_id).where(
            r.target_type == "Patient", r.target_id.in_(chunk)).distinct())
        for row in rows:
            inner[(row.res_type, row.res_id)] = None
    keys.update(inner)
    by_type: dict[str, list[str]] = {}
    for res_type, res_id in sorted(keys):
        by_type.setdefault(res_type, []).append(res_id)
    outer: dict[tuple[str, str], None] = {}
    for res_type, ids in by_type.items():
        for start in range(0, len(ids), 500):
            rows = tx.conn.execute(select(r.target_type, r.target_id).where(
                r.res_type == res_type, r.res_id.in_(ids[start:start + 500]),
                r.target_type.is_not(None), r.target_type != "Patient").distinct())
            for row in rows:
                outer[(row.target_type, row.target_id)] = None
    for key in outer:
        keys.setdefault(key, None)
    return list(tx.fetch(sorted(keys)))


__all__ = ["EverythingPage", "IdentityService", "MatchHit", "RebuildSummary", "Resolution",
           "as_gateway", "compartment"]
