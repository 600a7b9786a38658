"""A loopback HTTP load generator: client processes on persistent keep-alive connections.

Each client is its own process (forked, so the workload is inherited rather than copied through
pipes) with one `http.client` connection. Clients warm up, meet at a barrier, then send requests
for a fixed duration, each to a random entry of the workload, checking that every answer is a 200
whose body (after an optional normalisation) equals the expected bytes.
"""
from __future__ import annotations

import http.client
import multiprocessing as mp
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Normaliser = Callable[[bytes], bytes]
HEADERS = {"Accept": "application/fhir+json"}
MAX_ERROR_SAMPLES = 5
BARRIER_TIMEOUT = 60.0


@dataclass(frozen=True)
class Workload:
    """Requests to choose from: (path, expected body) pairs and how to normalise bodies."""

    name: str
    requests: Sequence[tuple[str, bytes]]
    normalise: Normaliser | None = None


@dataclass
class RunResult:
    """One timed run against one server."""

    requests: int
    throughput: float  # requests per second, summed over clients
    p50_ms: float
    p95_ms: float
    errors: int
    error_samples: list[str] = field(default_factory=list)
    cpu_ms_per_request: float | None = None  # server CPU (warm-up included) per request

    def to_json(self) -> dict[str, Any]:
        """Return the run as plain data."""
        cpu = None if self.cpu_ms_per_request is None else round(self.cpu_ms_per_request, 4)
        return {"requests": self.requests, "throughput_rps": round(self.throughput, 1),
                "p50_ms": round(self.p50_ms, 3), "p95_ms": round(self.p95_ms, 3),
                "server_cpu_ms_per_request": cpu, "errors": self.errors,
                "error_samples": self.error_samples}


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _client(port: int, workload: Workload, headers: Mapping[str, str], seed: int, warmup: float,
            duration: float, barrier: Any, out: Any) -> None:
    try:
        out.put(_client_run(port, workload, dict(headers), seed, warmup, duration, barrier))
    except Exception as exc:  # noqa: BLE001 - a client that cannot run fails the whole run
        barrier.abort()
        out.put((0, 0.0, [], 1, [f"client failed: {type(exc).__name__}: {exc}"], 0))


def _client_run(port: int, workload: Workload, headers: dict[str, str], seed: int,
                warmup: float, duration: float,
                barrier: Any) -> tuple[int, float, list[float], int, list[str], int]:
    rng = random.Random(seed)
    requests = workload.requests
    normalise = workload.normalise
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    errors = 0
    warm = 0
    samples: list[str] = []

    def one(record: bool) -> None:
        nonlocal conn, errors, warm
        path, expected = requests[rng.randrange(len(requests))]
        started = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            errors += 1
            if len(samples) < MAX_ERROR_SAMPLES:
                samples.append(f"{type(exc).__name__} on {path.split('?')[0]}")
            return
        elapsed = time.perf_counter() - started
        if status != 200 or (normalise(body) if normalise else body) != expected:
            errors += 1
            if len(samples) < MAX_ERROR_SAMPLES:
                what = f"status {status}" if status != 200 else "unexpected body"
                samples.append(f"{what} on {path.split('?')[0]}")
        if record:
            latencies.append(elapsed)
        else:
            warm += 1

    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        one(False)
    warm_errors, errors = errors, 0
    barrier.wait(timeout=BARRIER_TIMEOUT)
    started = time.perf_counter()
    end = started + duration
    last = started
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        one(True)
        last = time.perf_counter()
    conn.close()
    return len(latencies), last - started, latencies, errors + warm_errors, samples, warm


def run(port: int, workload: Workload, *, clients: int, warmup: float, duration: float,
        seed: int, headers: Mapping[str, str] | None = None,
        server_cpu: Callable[[], float | None] | None = None) -> RunResult:
    """Load the server on `port` with `clients` processes and return throughput and latency.

    `server_cpu` returns the server's CPU seconds so far; with it the result also carries the
    server CPU time per request (over warm-up and measurement), which other load on the machine
    disturbs far less than throughput.
    """
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(clients)
    out = ctx.Queue()
    sent = {**HEADERS, **(headers or {})}
    procs = [ctx.Process(target=_client, daemon=True,
                         args=(port, workload, sent, seed * 1000 + i, warmup, duration, barrier,
                               out))
             for i in range(clients)]
    cpu_before = server_cpu() if server_cpu else None
    for proc in procs:
        proc.start()
    results = [out.get(timeout=warmup + duration + 120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    cpu_after = server_cpu() if server_cpu else None
    total = sum(r[0] for r in results)
    throughput = sum(r[0] / r[1] for r in results if r[1] > 0)
    latencies = sorted(x for r in results for x in r[2])
    errors = sum(r[3] for r in results)
    samples = [s for r in results for s in r[4]][:MAX_ERROR_SAMPLES]
    answered = total + sum(r[5] for r in results)
    cpu_ms = None
    if cpu_before is not None and cpu_after is not None and answered:
        cpu_ms = (cpu_after - cpu_before) * 1000 / answered
    return RunResult(total, throughput, _percentile(latencies, 0.50) * 1000,
                     _percentile(latencies, 0.95) * 1000, errors, samples, cpu_ms)


def median(values: Sequence[float]) -> float:
    """Return the median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def median_or_none(values: Sequence[float | None]) -> float | None:
    """Return the median of the known values, rounded, or None when none is known."""
    known = [v for v in values if v is not None]
    return round(median(known), 4) if known else None


def cpu_text(cpu_ms: float | None) -> str:
    """Return CPU time per request for a progress line."""
    return "cpu   n/a" if cpu_ms is None else f"cpu {cpu_ms:5.2f} ms/req"
