"""OpenTelemetry helpers (the ``otel`` extra); see the "Tracing and logging" page.

```python
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from sarv_async.tracing import async_request_hook

HTTPXClientInstrumentor().instrument(async_request_hook=async_request_hook)
```

The SDK's own spans need no setup beyond a tracer provider: with ``opentelemetry-api``
installed, every call is traced.
"""

from __future__ import annotations

from ._tracing import async_request_hook

__all__ = ["async_request_hook"]
