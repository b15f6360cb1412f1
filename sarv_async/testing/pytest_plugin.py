"""pytest plugin: the ``sarv_emulator`` fixture, a running local emulator of the API.

```python
@pytest.mark.sarv_emulator(rate_limit="3/second", smtp=True)   # optional: Emulator options
async def test_create(sarv_emulator):
    async with sarv_emulator.client() as client: ...
```

Options also come from indirect parametrization, one emulator per set, e.g. every
reading of the documents' errors:

```python
@pytest.mark.parametrize(
    "sarv_emulator", [{"error_status": "http"}, {"error_kind_field": "type"}], indirect=True
)
```

The fixture is synchronous and function-scoped, so it suits any async test plugin.
This module loads in every pytest run: it imports the emulator only when the
fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._server import Emulator

__all__ = ["pytest_configure", "sarv_emulator"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``sarv_emulator`` marker."""
    config.addinivalue_line(
        "markers",
        "sarv_emulator(**options): keyword arguments for the sarv_emulator fixture's "
        "sarv_async.testing.Emulator",
    )


@pytest.fixture
def sarv_emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """A running `sarv_async.testing.Emulator`, configured by the ``sarv_emulator`` marker.

    An indirect parameter (a dict of `Emulator` options) adds to the marker's options.
    """
    from ._server import Emulator

    marker = request.node.get_closest_marker("sarv_emulator")
    if marker is not None and marker.args:
        raise TypeError("@pytest.mark.sarv_emulator takes keyword arguments only")
    options = dict(marker.kwargs) if marker is not None else {}
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, dict):
            raise TypeError("an indirect sarv_emulator parameter is a dict of Emulator options")
        options.update(param)
    with Emulator(**options) as emulator:
        yield emulator
