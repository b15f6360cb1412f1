"""The public namespace is what __all__ says, and names point at the public module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import sarv_async


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported yet); return what it printed."""
    return subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_all_names_exist_and_are_public() -> None:
    """Every name in __all__ is importable from sarv_async."""
    for name in sarv_async.__all__:
        assert hasattr(sarv_async, name), name
    assert len(set(sarv_async.__all__)) == len(sarv_async.__all__)


def test_no_public_name_is_left_out_of_all() -> None:
    """Every public attribute of the package (but submodules) is listed in __all__."""
    import types

    for name in sarv_async.__all__:  # load the names that load on first use
        getattr(sarv_async, name)

    public = {
        name
        for name, value in vars(sarv_async).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(sarv_async.__all__) - {"__version__"}


def test_classes_claim_the_public_module() -> None:
    """Tracebacks say sarv_async.X, not sarv_async._private.X."""
    for name in sarv_async.__all__:
        obj = getattr(sarv_async, name)
        if isinstance(obj, type):
            assert obj.__module__ == "sarv_async", name


def test_issue_contract_names_are_exported() -> None:
    """The names the docs promise are importable from the package root."""
    expected = {
        "AsyncSarvClient",
        "AsyncSendCleanClient",
        "SmtpUserStatus",
        "SarvError",
        "APIError",
        "ValidationError",
        "AuthenticationError",
        "GeneralError",
        "RateLimitError",
        "APIConnectionError",
        "APITimeoutError",
        "UnexpectedResponseError",
        "OutcomeUnknownError",
        "SmtpUser",
        "SmtpCredentials",
        "CreateSmtpUserRequest",
        "UpdateSmtpUserRequest",
        "ResetSmtpPasswordRequest",
        "ListSmtpUsersRequest",
    }
    assert expected <= set(sarv_async.__all__)


@pytest.mark.slow
def test_importing_the_package_imports_no_dependency() -> None:
    """``import sarv_async`` (as the pytest plugin does) loads no third-party package."""
    code = (
        "import sys, sarv_async; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'httpx', 'httpcore', 'attr', 'attrs', 'cattrs', 'anyio', 'importlib_metadata'}), "
        "'importlib.metadata' in sys.modules)"
    )
    assert _run(code) == "[] False"


@pytest.mark.slow
def test_names_load_on_first_use_as_the_public_module() -> None:
    """A name loads on first access, named sarv_async.X, and `dir` lists every name."""
    code = (
        "import sys, sarv_async; "
        "before = 'sarv_async._client' in sys.modules; "
        "cls = sarv_async.AsyncSarvClient; "
        "print(before, cls.__module__, set(sarv_async.__all__) <= set(dir(sarv_async)))"
    )
    assert _run(code) == "False sarv_async True"


#: What a plain client does not use until its first call, or at all: never loaded by
#: ``from sarv_async import AsyncSarvClient`` or by making a client (issue 17).
DEFERRED = (
    "sarv_async._converters",
    "sarv_async._fast_decode",
    "sarv_async._fast_read",
    "sarv_async._fence",
    "sarv_async._tracing",
    "sarv_async._list_stream",
    "sarv_async._json_stream",
    "sarv_async._provision",
    "sarv_async._idempotency",
    "sarv_async._engine",
    "sarv_async._holders",
    "sarv_async._ledger",
    "sarv_async._ledger_memory",
    "sarv_async._ledger_sqlite",
    "sarv_async._ledger_redis",
    "sarv_async._limiter_redis",
    "sarv_async._redis",
    "sarv_async._sync",
    "sarv_async._sync_loop",
    "sarv_async._cli",
    "sarv_async.tracing",
    "cattrs",
    "msgspec",
    "opentelemetry",
    "coredis",
    "redis",
    "sqlite3",
)


@pytest.mark.slow
def test_the_client_loads_only_what_a_plain_client_uses() -> None:
    """Importing the client, or making one, loads no module of `DEFERRED` (nor anyio's
    parts, on import); its first call loads what calls use, the models named sarv_async.X.
    """
    code = (
        "import sys\n"
        f"deferred = {DEFERRED!r}\n"
        "def loaded():\n"
        "    return sorted(m for m in deferred if m in sys.modules)\n"
        "from sarv_async import AsyncSarvClient\n"
        "print(loaded(), 'anyio._core._synchronization' in sys.modules)\n"
        "import asyncio, httpx\n"
        "def handler(request):\n"
        "    return httpx.Response(200, json={'status': 'success', 'smtp_list': []})\n"
        "http = httpx.AsyncClient(transport=httpx.MockTransport(handler))\n"
        "client = AsyncSarvClient('o', 't', base_url='https://api.example.com/v1.0/', "
        "http_client=http)\n"
        "print(loaded())\n"
        "async def main():\n"
        "    async with http, client:\n"
        "        return await client.smtp_users.list()\n"
        "print(asyncio.run(main()), 'sarv_async._converters' in sys.modules)\n"
        "import sarv_async._models as models, sarv_async._requests as requests\n"
        "print(models.SmtpUserList.__module__, requests.ListSmtpUsersRequest.__module__)\n"
    )
    assert _run(code).splitlines() == [
        "[] False",
        "[]",
        "[] True",
        "sarv_async sarv_async",
    ]


@pytest.mark.slow
def test_the_calls_annotations_resolve_at_run_time() -> None:
    """typing.get_type_hints reads the calls' signatures in a fresh interpreter, no call made."""
    code = (
        "import typing\n"
        "from sarv_async import AsyncSarvClient\n"
        "from sarv_async._resources import SmtpUsers\n"
        "for f in (SmtpUsers.create, SmtpUsers.update, SmtpUsers.reset_password, "
        "SmtpUsers.list, AsyncSarvClient.send):\n"
        "    print(f.__name__, sorted(typing.get_type_hints(f)))\n"
    )
    assert _run(code).splitlines() == [
        "create ['hourly_limit', 'idempotency_key', 'return', 'total_limit']",
        "update ['hourly_limit', 'return', 'smtp_user_name', 'status', 'total_limit']",
        "reset_password ['return', 'smtp_user_name']",
        "list ['return']",
        "send ['request', 'return']",
    ]


@pytest.mark.slow
def test_errors_are_public_whichever_module_raises_them() -> None:
    """An error raised through a private import path still says sarv_async.X."""
    code = (
        "from sarv_async._client import AsyncSarvClient\n"
        "try:\n"
        "    AsyncSarvClient('o', 't', base_url='https://x.example/', max_concurrency=0)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__module__, type(exc).__name__)"
    )
    assert _run(code) == "sarv_async ValidationError"


@pytest.mark.slow
def test_answers_are_read_when_names_loaded_before_the_converter() -> None:
    """Loading every public name first (renaming them) leaves requests and answers readable."""
    code = (
        "import sarv_async\n"
        "for name in sarv_async.__all__: getattr(sarv_async, name)\n"
        "from sarv_async._converters import structure_response, unstructure_request\n"
        "print(unstructure_request(sarv_async.CreateSmtpUserRequest(total_limit=2, "
        "hourly_limit=1)))\n"
        "print(structure_response({'smtp_list': [], 'message': 'ok'}, sarv_async.SmtpUserList, "
        "status_code=200))"
    )
    assert _run(code).splitlines() == [
        "{'total_limit': 2, 'hourly_limit': 1}",
        "SmtpUserList(smtp_list=[], message='ok')",
    ]


def test_type_checkers_see_every_name_that_loads_on_first_use() -> None:
    """Each lazily loaded name is imported under TYPE_CHECKING from the module it loads from."""
    tree = ast.parse(Path(sarv_async.__file__).read_text())
    checked = {
        alias.asname: f".{node.module}"
        for block in tree.body
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names
        if alias.asname == alias.name
    }
    assert checked == sarv_async._LAZY


def test_version_comes_from_package_metadata() -> None:
    """__version__ is the installed distribution's version."""
    from importlib.metadata import version

    assert sarv_async.__version__ == version("sarv-async")


def test_error_tree() -> None:
    """The exception hierarchy is the documented one."""
    s = sarv_async
    assert issubclass(s.APIError, s.SarvError)
    for cls in (s.ValidationError, s.AuthenticationError, s.GeneralError, s.RateLimitError):
        assert issubclass(cls, s.APIError)
    assert issubclass(s.APITimeoutError, s.APIConnectionError)
    assert issubclass(s.APIConnectionError, s.SarvError)
    assert issubclass(s.UnexpectedResponseError, s.SarvError)
    assert issubclass(s.OutcomeUnknownError, s.SarvError)


#: Classes users get from a call, never construct: their ``__init__`` takes internals.
_MADE_BY_THE_SDK = {"Provisioning", "SyncProvisioning", "SmtpUsers", "SyncSmtpUsers"}


def _public_signature_names() -> dict[str, set[str]]:
    """Per public name: the sarv_async names its signatures and protocol methods mention."""
    import inspect
    import re
    import typing

    for name in sarv_async.__all__:
        getattr(sarv_async, name)
    found: dict[str, set[str]] = {}

    def annotations_of(func: object) -> list[str]:
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # a name known to type checkers only: read the strings
            hints = dict(getattr(func, "__annotations__", {}))
        return [value if isinstance(value, str) else repr(value) for value in hints.values()]

    for name in sarv_async.__all__:
        obj = getattr(sarv_async, name)
        texts: list[str] = []
        if inspect.isclass(obj):
            for attribute, member in vars(obj).items():
                if attribute.startswith("_") and attribute != "__init__":
                    continue
                if attribute == "__init__" and name in _MADE_BY_THE_SDK:
                    continue
                if isinstance(member, property):
                    member = member.fget
                if callable(member):
                    texts += annotations_of(member)
            if hasattr(obj, "__attrs_attrs__"):
                texts += [repr(field.type) for field in obj.__attrs_attrs__]
        elif callable(obj):
            texts += annotations_of(obj)
        mentioned = set()
        for text in texts:
            mentioned |= set(re.findall(r"sarv_async(?:\.[\w]+)*\.([A-Z]\w*)", text))
            mentioned |= set(re.findall(r"\b([A-Z]\w*)\b", text))
        found[name] = mentioned
    return found


def test_every_name_of_a_public_signature_is_exported() -> None:
    """A type in a public signature (or one needed to implement `Ledger`) is importable."""
    own: set[str] = set()
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(sarv_async.__path__):
        if module.name.startswith("_") and not module.name.startswith("_cli"):
            loaded = importlib.import_module(f"sarv_async.{module.name}")
            own |= {
                name
                for name in getattr(loaded, "__all__", ())
                if name[:1].isupper() and not name.isupper()
            }
    missing = {
        f"{name} mentions {mentioned}"
        for name, names in _public_signature_names().items()
        for mentioned in names & own
        if mentioned not in sarv_async.__all__
    }
    assert not missing, sorted(missing)


def test_the_ledger_protocol_can_be_implemented_from_public_names() -> None:
    """The types `Ledger`'s methods take and return are exported, and so is `MemoryLedger`."""
    needed = {"Begin", "Claim", "Decision", "EntryState", "LedgerEntry", "MemoryLedger"}
    assert needed <= set(sarv_async.__all__)


def test_the_reference_page_lists_every_public_name() -> None:
    """docs/reference.md renders each exported name (a ``::: sarv_async.X`` directive)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text()
    missing = [name for name in sarv_async.__all__ if f"::: sarv_async.{name}\n" not in text]
    assert not missing, missing
