"""The public namespace is what __all__ says, and names point at the public module."""

from __future__ import annotations

import sarv_async


def test_all_names_exist_and_are_public() -> None:
    """Every name in __all__ is importable from sarv_async."""
    for name in sarv_async.__all__:
        assert hasattr(sarv_async, name), name
    assert len(set(sarv_async.__all__)) == len(sarv_async.__all__)


def test_no_public_name_is_left_out_of_all() -> None:
    """Every public attribute of the package (but submodules) is listed in __all__."""
    import types

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
