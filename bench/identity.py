"""Identity at scale: Patient/$match and Patient/$everything latency at 10k and 100k children.

- **Data**: synthetic children (`bench.synthetic`), each stored as a source Patient with an
  EpisodeOfCare and an Observation about it, its golden Patient, its identity link (features)
  and its blocking keys: everything the identity service itself would have written, bulk-inserted
  (SQLAlchemy Core executemany, index rows from the gateway's own `extract_index`) so that 100k
  children load in minutes. The first size is stored, measured, then topped up to the second.
- **Requests**: in-process through the gateway's WSGI app (`create_app`, test client, a development
  token of an agency that reads everything): the whole request path without a network.
  `$match` sends a messy copy of a stored child (nickname or upper-case surname, day and month
  swapped, postcode unspaced) in a Parameters body; `$everything` asks for a stored child's
  golden Patient. The baseline is `GET /fhir/Patient/{id}` at the same size, measured in the
  same run: an indexed read by primary key.
- **Reported**: p50/p95 latency per scenario and size, each scenario's p50 as a multiple of the
  baseline's at that size, and the growth from the first size to the second (`growth` = p50 at
  100k / p50 at 10k; 1.0 is flat, 10.0 would be linear). Every $match must find its child.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_POSTGRES_URL, PostgresScratch, machine_info, write_results
from bench.synthetic import Child, children

NAME = "identity"
BATCH = 2000
AGENCY = "social-care"
SOURCE = "bench"


@dataclass(frozen=True)
class Options:
    """What one run does."""

    sizes: tuple[int, ...]
    queries: int


DEFAULT = Options(sizes=(10_000, 100_000), queries=300)
QUICK = Options(sizes=(1_000, 10_000), queries=60)


def _uuid(rng: random.Random) -> str:
    import uuid

    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _records(kid: Child, rng: random.Random) -> tuple[list[tuple[str, str, dict[str, Any]]],
                                                      dict[str, Any]]:
    """Return the resources stored for one child and its identity link row."""
    from gateway.identity.blocking import blocking_keys
    from gateway.identity.features import extract
    from gateway.identity.golden import Member, compose
    from vocab import systems

    tag = {"system": systems.AGENCY, "code": AGENCY}
    source = dict(kid.resource, meta={"source": f"urn:wraparound:source:{SOURCE}", "tag": [tag]})
    source["identifier"] = [*kid.resource["identifier"], {
        "system": systems.local_id_system(SOURCE), "value": kid.res_id[:8].upper()}]
    features = extract(source)
    golden_id = _uuid(rng)
    golden = compose(golden_id, [Member(kid.res_id, source, features, "")])
    golden["meta"]["tag"] = [{"system": systems.AGENCY, "code": "gateway"}]
    ref = {"reference": f"Patient/{kid.res_id}"}
    episode = {"resourceType": "EpisodeOfCare", "meta": {"tag": [tag]}, "status": "active",
               "type": [{"coding": [{"system": systems.EPISODE_OF_CARE_TYPE, "code": "CIN"}]}],
               "patient": ref, "period": {"start": "2025-01-01"}}
    observation = {"resourceType": "Observation", "meta": {"tag": [tag]}, "status": "final",
                   "code": {"text": "school attendance"}, "subject": ref,
                   "valueQuantity": {"value": rng.randint(60, 100), "unit": "%"}}
    resources = [("Patient", kid.res_id, source), ("Patient", golden_id, golden),
                 ("EpisodeOfCare", _uuid(rng), episode), ("Observation", _uuid(rng), observation)]
    link = {"source_id": kid.res_id, "source": SOURCE, "golden_id": golden_id,
            "grade": "certain", "score": 0.0, "rule": "new-record", "decider": "algorithm",
            "features": features.to_json(), "digest": features.digest(),
            "keys": blocking_keys(features)}
    return resources, link


def seed(database_url: str, kids: list[Child], rng: random.Random) -> dict[str, str]:
    """Bulk-insert the children; return source Patient id -> golden Patient id."""
    from sqlalchemy import insert

    from gateway.fhir.indexing import extract_index
    from gateway.fhir.registry import load_registry
    from gateway.store import make_engine
    from gateway.store.schema import (
        identity_blocks,
        identity_links,
        idx_date,
        idx_number,
        idx_reference,
        idx_string,
        idx_token,
        idx_uri,
        resources,
    )
    from gateway.store.sql import stamp, utc_now

    registry = load_registry()
    engine = make_engine(database_url)
    goldens: dict[str, str] = {}
    try:
        for start in range(0, len(kids), BATCH):
            rows: dict[str, list[dict[str, Any]]] = {}
            for kid in kids[start:start + BATCH]:
                stored, link = _records(kid, rng)
                goldens[kid.res_id] = link["golden_id"]
                now = utc_now()
                rows.setdefault("blocks", []).extend(
                    {"key": k, "source_id": kid.res_id} for k in link.pop("keys"))
                rows.setdefault("links", []).append(dict(link, updated=now))
                for res_type, res_id, body in stored:
                    rows.setdefault("resources", []).append({
                        "res_type": res_type, "res_id": res_id, "version_id": 1,
                        "last_updated": now, "deleted": False,
                        "content": stamp(body, res_id, 1, now)})
                    rtype = registry.get(res_type)
                    assert rtype is not None
                    index = extract_index(rtype, body)
                    owner = {"res_type": res_type, "res_id": res_id}
                    rows.setdefault("token", []).extend(
                        dict(owner, param=p, system=s, code=c[:512]) for p, s, c in index.tokens)
                    rows.setdefault("string", []).extend(
                        dict(owner, param=p, value_norm=n, value=v) for p, n, v in index.strings)
                    rows.setdefault("date", []).extend(
                        dict(owner, param=p, low=lo, high=hi) for p, lo, hi in index.dates)
                    rows.setdefault("reference", []).extend(
                        dict(owner, param=p, target_type=t, target_id=i[:64])
                        for p, t, i in index.references)
                    rows.setdefault("number", []).extend(
                        dict(owner, param=p, value=v) for p, v in index.numbers)
                    rows.setdefault("uri", []).extend(
                        dict(owner, param=p, value=v) for p, v in index.uris)
            tables = {"resources": resources, "links": identity_links, "blocks": identity_blocks,
                      "token": idx_token, "string": idx_string, "date": idx_date,
                      "reference": idx_reference, "number": idx_number, "uri": idx_uri}
            with engine.begin() as conn:
                for name, table in tables.items():
                    if rows.get(name):
                        conn.execute(insert(table), rows[name])
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    return goldens


def messy(kid: Child, rng: random.Random) -> dict[str, Any]:
    """Return a Patient as another agency might hold the child: same person, other spelling."""
    name = dict(kid.resource["name"][0])
    nicknames = {"Thomas": "Tom", "Alexander": "Alex", "James": "Jamie", "William": "Billy",
                 "Isabella": "Bella", "Charlotte": "Lottie", "Amelia": "Millie",
                 "Theodore": "Theo", "Frederick": "Freddie", "Jacob": "Jake"}
    given = list(name["given"])
    given[0] = nicknames.get(given[0], given[0])
    if rng.random() < 0.5:
        name = {"family": name["family"].upper(), "given": given[:1]}
    else:
        name = {"family": name["family"], "given": given}
    year, month, day = kid.resource["birthDate"].split("-")
    birth = f"{year}-{day}-{month}" if int(day) <= 12 and rng.random() < 0.5 else \
        kid.resource["birthDate"]
    postcode = kid.resource["address"][0]["postalCode"].replace(" ", "").lower()
    return {"resourceType": "Patient", "name": [name], "gender": kid.resource["gender"],
            "birthDate": birth, "address": [{"postalCode": postcode}]}


def _time(fn: Any, count: int) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {"p50_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2), "n": len(ordered)}


def measure(database_url: str, tmp: Path, kids: list[Child], goldens: dict[str, str],
            queries: int, rng: random.Random) -> dict[str, Any]:
    """Measure the three scenarios in-process against the stored children."""
    from gateway import create_app
    from gateway.config import Settings

    app = create_app(Settings(env="development", data_dir=tmp, database_url=database_url,
                              rate_limit_per_minute=0, log_level="WARNING"))
    services = app.extensions["wraparound"]
    client = app.test_client()
    token = services.tokens.dev_token(AGENCY, ["system/*.rs"])
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    sample = rng.sample(kids, queries)
    misses = 0

    def read() -> None:
        kid = rng.choice(sample)
        assert client.get(f"/fhir/Patient/{kid.res_id}").status_code == 200

    def match() -> None:
        nonlocal misses
        kid = rng.choice(sample)
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": messy(kid, rng)},
            {"name": "count", "valueInteger": 5}]}
        resp = client.post("/fhir/Patient/$match", json=body,
                           headers={"Content-Type": "application/fhir+json"})
        assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
        found = [e["resource"]["id"] for e in resp.get_json().get("entry", [])]
        misses += goldens[kid.res_id] not in found

    def everything() -> None:
        kid = rng.choice(sample)
        resp = client.get(f"/fhir/Patient/{goldens[kid.res_id]}/$everything")
        assert resp.status_code == 200 and resp.get_json()["total"] == 4

    try:
        warm = max(queries // 10, 5)
        for fn in (read, match, everything):
            _time(fn, warm)
        result = {"read (baseline)": _summary(_time(read, queries)),
                  "$match": _summary(_time(match, queries)),
                  "$everything": _summary(_time(everything, queries))}
        result["$match"]["missed"] = misses - 0
    finally:
        services.audit.flush()
        services.store.dispose()
    return result


def run_database(db: str, url: str, opts: Options, tmp: Path) -> dict[str, Any]:
    """Seed and measure each size on one database."""
    from gateway.store import make_engine, upgrade

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    rng = random.Random(7)
    everyone = children(max(opts.sizes), seed=20240601)
    goldens: dict[str, str] = {}
    stored = 0
    out: dict[str, Any] = {}
    for size in opts.sizes:
        started = time.monotonic()
        goldens.update(seed(url, everyone[stored:size], rng))
        print(f"[{db}] stored {size} children ({time.monotonic() - started:.0f}s)", flush=True)
        stored = size
        out[str(size)] = measure(url, tmp, everyone[:size], goldens, opts.queries, rng)
        print(f"[{db}] {size}: {out[str(size)]}", flush=True)
    first, last = str(opts.sizes[0]), str(opts.sizes[-1])
    growth = {}
    for scenario in out[first]:
        growth[scenario] = round(out[last][scenario]["p50_ms"] / out[first][scenario]["p50_ms"],
                                 2)
        for size in out:
            out[size][scenario]["x_baseline"] = round(
                out[size][scenario]["p50_ms"] / out[size]["read (baseline)"]["p50_ms"], 2)
    return {"sizes": out, "growth": growth}


def print_table(results: dict[str, Any]) -> None:
    """Print the results as a table."""
    print(f"\n{'db':9} {'size':>7} {'scenario':16} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'x read':>7} {'growth':>7}")
    for db, data in results["databases"].items():
        if "error" in data:
            print(f"{db:9} error: {data['error']}")
            continue
        for size, scenarios in data["sizes"].items():
            for name, s in scenarios.items():
                grow = data["growth"][name] if size == list(data["sizes"])[-1] else ""
                print(f"{db:9} {size:>7} {name:16} {s['p50_ms']:8.2f} {s['p95_ms']:8.2f} "
                      f"{s['x_baseline']:7.2f} {grow!s:>7}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0, or 1 when a database failed or a $match missed."""
    parser = argparse.ArgumentParser(prog="python -m bench.identity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1k and 10k children")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--sizes", help="comma-separated sizes (default 10000,100000)")
    parser.add_argument("--queries", type=int, help="requests per scenario and size")
    parser.add_argument("--postgres-url", default=None,
                        help="admin URL for the scratch database (default: "
                             "WRAPAROUND_BENCH_POSTGRES_URL or the local server)")
    parser.add_argument("--postgres-db", default="wraparound_bench_identity")
    args = parser.parse_args(argv)
    opts = QUICK if args.quick else DEFAULT
    if args.sizes:
        opts = Options(tuple(int(s) for s in args.sizes.split(",")), opts.queries)
    if args.queries:
        opts = Options(opts.sizes, args.queries)
    started = time.monotonic()
    results: dict[str, Any] = {"benchmark": NAME, "machine": machine_info(),
                               "options": {"sizes": list(opts.sizes), "queries": opts.queries},
                               "databases": {}}
    failed = False
    with tempfile.TemporaryDirectory(prefix="wraparound-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for db in (["sqlite", "postgres"] if args.db == "both" else [args.db]):
            try:
                if db == "sqlite":
                    results["databases"][db] = run_database(
                        db, f"sqlite:///{tmp / 'identity.sqlite'}", opts, tmp)
                else:
                    admin = (args.postgres_url or os.environ.get("WRAPAROUND_BENCH_POSTGRES_URL")
                             or DEFAULT_POSTGRES_URL)
                    scratch = PostgresScratch(admin, args.postgres_db)
                    try:
                        results["databases"][db] = run_database(db, scratch.create(), opts, tmp)
                    finally:
                        scratch.drop()
            except Exception as exc:  # noqa: BLE001 - one database failing must not hide the other
                failed = True
                print(f"[{db}] benchmark could not run: {type(exc).__name__}: {exc}", flush=True)
                results["databases"][db] = {"error": f"{type(exc).__name__}: {exc}"}
    for data in results["databases"].values():
        failed = failed or any(s["$match"].get("missed") for s in data.get("sizes", {}).values())
    results["seconds"] = round(time.monotonic() - started, 1)
    print_table(results)
    path = write_results(NAME, results)
    print(f"\nresults: {path} ({results['seconds']:.0f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
