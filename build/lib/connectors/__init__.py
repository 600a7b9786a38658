"""National service connectors: the shared SOAP layer, one package per service, the mock server.

`connectors` imports nothing from `gateway`; clients never import Flask (mocks may). The public
surface for the gateway is `connectors.errors`, `connectors.pds`, `connectors.cpis` and, for
tests and the demo, `connectors.mockserver`.
"""

from __future__ import annotations

__all__: list[str] = []
