"""Run the mock national server in a background thread (tests) or in the foreground (CLI)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from connectors.mockserver.app import MockSettings, create_mock_app

__all__ = ["run_in_thread", "serve_forever"]


class _QuietHandler(WSGIRequestHandler):
    """A request handler that writes no access log (tests run many requests)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Write nothing."""


def run_in_thread(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    settings: MockSettings | None = None,
    app: Flask | None = None,
    quiet: bool = True,
) -> tuple[str, Callable[[], None]]:
    """Start the mock on a free port (port=0) in a thread; return (base_url, stop)."""
    app = app or create_mock_app(settings)
    handler = _QuietHandler if quiet else None
    server = make_server(host, port, app, threaded=True, request_handler=handler)
    bound_port = server.server_port
    thread = threading.Thread(target=server.serve_forever, name="mock-national-server", daemon=True)
    thread.start()
    stopped = threading.Event()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        mock = app.extensions.get("wraparound_mock")
        if mock is not None:
            mock.faults.released.set()  # let hanging requests finish
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    display_host = f"[{host}]" if ":" in host else host
    return f"http://{display_host}:{bound_port}", stop


def serve_forever(host: str, port: int, *, settings: MockSettings | None = None) -> None:
    """Serve the mock in the foreground with werkzeug's threaded server until interrupted."""
    app = create_mock_app(settings)
    server = make_server(host, port, app, threaded=True)
    try:
        server.serve_forever()
    finally:
        mock = app.extensions.get("wraparound_mock")
        if mock is not None:
            mock.faults.released.set()
        server.server_close()
