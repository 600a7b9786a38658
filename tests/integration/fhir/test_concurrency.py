"""Races over real HTTP: If-Match updates and conditional creates, on both databases."""
from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.conftest import LiveServer, make_patient


def _barrier_run(n: int, fn: object) -> list[int]:
    barrier = threading.Barrier(n)

    def call(i: int) -> int:
        barrier.wait()
        return fn(i)  # type: ignore[operator, no-any-return]

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(call, range(n)))


def test_two_updates_with_same_if_match_one_wins(live_server: LiveServer) -> None:
    created = requests.post(f"{live_server.url}/fhir/Patient", json=make_patient(),
                            headers=live_server.headers, timeout=10).json()
    url = f"{live_server.url}/fhir/Patient/{created['id']}"

    def update(i: int) -> int:
        body = dict(created, gender=("male", "other")[i])
        return requests.put(url, json=body, headers={**live_server.headers, "If-Match": 'W/"1"'},
                            timeout=30).status_code

    statuses = Counter(_barrier_run(2, update))
    assert statuses == Counter({200: 1, 412: 1})
    history = requests.get(f"{url}/_history", headers=live_server.headers, timeout=10).json()
    assert history["total"] == 2  # no lost update: exactly one new version


def test_eight_concurrent_conditional_creates_make_one_resource(live_server: LiveServer) -> None:
    header = {**live_server.headers,
              "If-None-Exist": "identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919"}

    def create(_: int) -> int:
        return requests.post(f"{live_server.url}/fhir/Patient",
                             json=make_patient(nhs="9434765919"), headers=header,
                             timeout=30).status_code

    statuses = Counter(_barrier_run(8, create))
    assert statuses == Counter({201: 1, 200: 7})
    bundle = requests.get(f"{live_server.url}/fhir/Patient?identifier=9434765919",
                          headers=live_server.headers, timeout=10).json()
    assert bundle["total"] == 1


def test_concurrent_creates_of_same_client_id(live_server: LiveServer) -> None:
    def put(i: int) -> int:
        body = make_patient(id="sc-C0007", gender=("male", "female", "other", "unknown")[i])
        return requests.put(f"{live_server.url}/fhir/Patient/sc-C0007", json=body,
                            headers=live_server.headers, timeout=30).status_code

    statuses = Counter(_barrier_run(4, put))
    assert statuses[201] == 1
    assert statuses[200] == 3
    history = requests.get(f"{live_server.url}/fhir/Patient/sc-C0007/_history",
                           headers=live_server.headers, timeout=10).json()
    assert history["total"] == 4
