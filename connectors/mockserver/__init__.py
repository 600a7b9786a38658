"""The mock national server: every national service on one Flask app, with fault injection.

Start it with ``wraparound mocks serve --host 127.0.0.1 --port 8090`` or, in tests,
``base_url, stop = run_in_thread()``. Services live at ``/spine/pds``, ``/spine/cpis``,
``/contactpoint`` and ``/ecaf``; each serves its WSDL at ``?wsdl``. The admin API is described in
`connectors.mockserver.app`.
"""

from __future__ import annotations

from connectors.mockserver.app import MockSettings, create_mock_app, default_services
from connectors.mockserver.faults import FAULT_KINDS, HOSTILE_VARIANTS, hostile_document
from connectors.mockserver.runner import run_in_thread, serve_forever
from connectors.mockserver.service import MockReply, MockRequest, MockService

__all__ = [
    "FAULT_KINDS",
    "HOSTILE_VARIANTS",
    "MockReply",
    "MockRequest",
    "MockService",
    "MockSettings",
    "create_mock_app",
    "default_services",
    "hostile_document",
    "run_in_thread",
    "serve_forever",
]
