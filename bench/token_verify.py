"""Time `TokenService.verify`, the check that runs on every request.

Run: ``.venv/bin/python bench/token_verify.py [--number N]``. Prints microseconds per call for a
token seen before (the usual case: a client reuses its token for its lifetime) and for a token
seen for the first time (full EdDSA signature check), on a scratch SQLite database. Neither path
touches the database except the revocation/key reload, at most once every 5 seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event

from gateway.config import Settings
from gateway.security.tokens import TokenService
from gateway.store import make_engine, upgrade


def main() -> None:
    """Print verify() cost per call, warm and cold."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.sqlite'}")
        upgrade(engine)
        service = TokenService(engine, Settings(env="test", database_url=str(engine.url)))
        scopes = ["system/Patient.rs", "system/Observation.rs", "system/Flag.rs"]
        token = service.dev_token("health", scopes, client_id="bench-client")
        service.verify(token)
        queries = [0]
        event.listen(engine, "before_cursor_execute", lambda *a: queries.__setitem__(
            0, queries[0] + 1))

        start = time.perf_counter()
        for _ in range(args.number):
            service.verify(token)
        warm = (time.perf_counter() - start) / args.number * 1e6

        fresh = [service.dev_token("health", scopes, client_id="bench-client")
                 for _ in range(min(args.number, 5_000))]
        start = time.perf_counter()
        for t in fresh:
            service.verify(t)
        cold = (time.perf_counter() - start) / len(fresh) * 1e6
        key = Ed25519PrivateKey.generate()
        message = b"x" * 300
        signature = key.sign(message)
        public = key.public_key()
        start = time.perf_counter()
        for _ in range(len(fresh)):
            public.verify(signature, message)
        raw = (time.perf_counter() - start) / len(fresh) * 1e6
        engine.dispose()
    print(f"verify(), token seen before:  {warm:7.2f} us/call  ({args.number} calls)")
    print(f"verify(), first sight (EdDSA): {cold:7.2f} us/call  ({len(fresh)} calls)")
    print(f"Ed25519 signature check alone:  {raw:7.2f} us/call  (for comparison)")
    print(f"database queries during the timed calls: {queries[0]}")


if __name__ == "__main__":
    main()
