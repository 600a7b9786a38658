"""The bare hop of the PDS broker benchmark: an HTTP relay with no gateway logic.

    python -m bench.pds_relay --port P --target http://127.0.0.1:M/spine/pds [--workers 1 --threads 4]

Served exactly as the gateway is (`gateway.cli.serve.run_wsgi` with `gunicorn_options`, gthread),
with a bare Flask app:

- `POST /envelopes`: the benchmark loads the envelopes to relay, one per NHS number (JSON
  `{nhs: {"body": str, "headers": {...}}}`), the same ones the raw side posts;
- `GET /relay/<nhs>`: posts that envelope to the target with a `requests.Session` (one per
  thread), parses the reply with lxml (entities, DTDs and network off), checks SMSP-0000 and
  answers a two-field JSON object (502 when the reply is not a success).

So a relayed read costs one HTTP hop into a gunicorn/Flask process plus exactly the raw side's
SOAP call: `bench/national_pds.py` compares it with the raw call and with the brokered read to
split the broker's ratio into the hop and the gateway's own work.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

import orjson
import requests
from lxml import etree

HOST = "127.0.0.1"
_SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def relay_app(target: str) -> Any:
    """Return the relay app posting to `target`."""
    from flask import Flask, Response, request

    app = Flask("pds-relay")
    envelopes: dict[str, tuple[bytes, dict[str, str]]] = {}
    local = threading.local()

    def session() -> requests.Session:
        found: requests.Session | None = getattr(local, "session", None)
        if found is None:
            found = local.session = requests.Session()
        return found

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', mimetype="application/json")

    @app.post("/envelopes")
    def load() -> Response:
        data = orjson.loads(request.get_data())
        envelopes.update(
            {nhs: (e["body"].encode("utf-8"), dict(e["headers"])) for nhs, e in data.items()}
        )
        return Response(orjson.dumps({"loaded": len(data)}), mimetype="application/json")

    @app.get("/relay/<nhs>")
    def relay(nhs: str) -> Response:
        envelope = envelopes.get(nhs)
        if envelope is None:
            return Response(b"{}", status=404, mimetype="application/json")
        resp = session().post(target, data=envelope[0], headers=envelope[1], timeout=30)
        parser = getattr(local, "parser", None)
        if parser is None:
            parser = local.parser = _SAFE.copy()
        root = etree.fromstring(resp.content, parser)
        codes = root.xpath("//*[local-name()='value']/@code")
        if resp.status_code != 200 or "SMSP-0000" not in codes:
            return Response(b"{}", status=502, mimetype="application/json")
        return Response(
            orjson.dumps({"resourceType": "Patient", "id": nhs}), mimetype="application/fhir+json"
        )

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the relay until SIGTERM."""
    from gateway.cli.serve import gunicorn_options, run_wsgi

    parser = argparse.ArgumentParser(prog="python -m bench.pds_relay")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="the PDS endpoint to relay to")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    run_wsgi(
        lambda: relay_app(args.target),
        gunicorn_options(HOST, args.port, args.workers, args.threads),
    )


if __name__ == "__main__":
    main()
