"""The fast path for well-formed answers reads exactly what the tolerant path reads.

Every answer is read twice: by the SDK's converter (fast path first) and by one built
without the fast path (the tolerant cattrs path alone). Both must give equal results,
or fail with the same message naming the same path.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sarv_async import (
    SmtpCredentials,
    SmtpUser,
    SmtpUserList,
    SmtpUserStatus,
    UnexpectedResponseError,
)
from sarv_async._converters import _ALIASES, _SPELLINGS, _make_converter, structure_response
from sarv_async._fast_read import make_reader

FAST = _make_converter()
TOLERANT = _make_converter(fast=False)
MISSING = object()  # a key left out

names = st.one_of(st.text(max_size=12), st.integers(-5, 10**6), st.none(), st.just(MISSING))
passwords = st.one_of(
    st.text(max_size=12), st.integers(0, 99), st.none(), st.booleans(), st.just(MISSING)
)
statuses = st.one_of(
    st.sampled_from(["Enable", "Disable", "enable", "DISABLED", " Enable ", "1", "0", "maybe", ""]),
    st.sampled_from([1, 0, 2, -1, True, False, 1.0, None, [], {}, MISSING]),
)
limits = st.one_of(
    st.integers(-(10**12), 10**12),
    st.sampled_from(["200", " 20 ", "-3", "1.5", "lots", "", 5.0, 5.5, True, None, [], MISSING]),
)
extras = st.dictionaries(
    st.sampled_from(["created_at", "id", "note", "status_code"]),
    st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)),
    max_size=2,
)


@st.composite
def user_entries(draw: st.DrawFn) -> object:
    """A list entry of any shape the API (or a broken server) could send."""
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([None, [], "smtp1", 7, [{"smtp_user_name": "x"}]]))
    fields = {
        "smtp_user_name": draw(names),
        "smtp_password": draw(passwords),
        "password": draw(passwords),
        "status": draw(statuses),
        "total_limit": draw(limits),
        "hourly_limit": draw(limits),
    }
    entry = {key: value for key, value in fields.items() if value is not MISSING}
    entry.update(draw(extras))
    return entry


def well_formed(i: int) -> dict[str, Any]:
    """The documented sample's shape, with exact types."""
    return {
        "smtp_user_name": f"smtp{i:07d}",
        "password": f"{i:010x}",
        "status": "Enable" if i % 3 else "Disable",
        "total_limit": 1000 + i,
        "hourly_limit": 10 + i % 50,
    }


def both_ways(data: dict[str, Any], response_type: type[Any]) -> tuple[object, object]:
    """What the SDK's converter and the tolerant-only one make of ``data``: value or error."""
    results = []
    for converter in (FAST, TOLERANT):
        try:
            results.append(
                structure_response(data, response_type, status_code=200, converter=converter)
            )
        except UnexpectedResponseError as exc:
            results.append(str(exc))
    return results[0], results[1]


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(user_entries(), max_size=6), st.one_of(st.none(), st.text(max_size=4), st.just(3)))
def test_any_list_answer_reads_alike_both_ways(users: list[object], message: object) -> None:
    """For any list answer, the fast path gives the tolerant path's users, or its error."""
    data = {"status": "success", "smtp_list": users, "message": message}
    fast, tolerant = both_ways(data, SmtpUserList)
    assert fast == tolerant


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(user_entries(), st.one_of(st.none(), st.text(max_size=4), st.just(MISSING)))
def test_any_credentials_answer_reads_alike_both_ways(entry: object, message: object) -> None:
    """Create and reset-password answers read alike both ways, whatever their shape."""
    if not isinstance(entry, dict):
        entry = {}
    data = {"status": "success", **entry}
    if message is not MISSING:
        data["message"] = message
    fast, tolerant = both_ways(data, SmtpCredentials)
    assert fast == tolerant


BIG = [well_formed(i) for i in range(5000)]

#: Surprises the tolerant path reads, and what it reads them as.
TOLERATED: list[tuple[str, Any, str, Any]] = [
    ("status", "enable", "status", SmtpUserStatus.ENABLE),
    ("status", 0, "status", SmtpUserStatus.DISABLE),
    ("status", "1", "status", SmtpUserStatus.ENABLE),
    ("total_limit", "250", "total_limit", 250),
    ("hourly_limit", 7.0, "hourly_limit", 7),
    ("smtp_user_name", 12345, "smtp_user_name", "12345"),
    ("smtp_password", "table-key", "smtp_password", "table-key"),
    ("smtp_password", None, "smtp_password", None),  # null: the sample's ``password`` applies
]


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 4999), st.sampled_from(TOLERATED))
def test_a_tolerated_surprise_anywhere_in_5000_users_is_read(
    index: int, surprise: tuple[str, Any, str, Any]
) -> None:
    """One odd user among 5,000 is read the tolerant way; every other user is unchanged."""
    key, value, field, expected = surprise
    if expected is None:
        expected = BIG[index]["password"]
    users = list(BIG)
    users[index] = {**BIG[index], key: value}
    answer = structure_response(
        {"status": "success", "smtp_list": users}, SmtpUserList, status_code=200, converter=FAST
    )
    assert getattr(answer.smtp_list[index], field) == expected
    assert answer == structure_response(
        {"status": "success", "smtp_list": users}, SmtpUserList, status_code=200, converter=TOLERANT
    )
    assert answer.smtp_list[:index] == [_user(i) for i in range(index)]
    assert len(answer.smtp_list) == 5000


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("status", "maybe", "status"),
        ("total_limit", "lots", "total_limit"),
        ("hourly_limit", [], "hourly_limit"),
        ("password", MISSING, "smtp_password"),
        ("smtp_user_name", MISSING, "smtp_user_name"),
    ],
)
@pytest.mark.parametrize("index", [0, 1234, 4999])
def test_a_bad_value_anywhere_in_5000_users_is_named_by_its_path(
    index: int, key: str, value: object, named: str
) -> None:
    """An unreadable user among 5,000 fails with the path of the bad value."""
    users = list(BIG)
    users[index] = {k: v for k, v in {**BIG[index], key: value}.items() if v is not MISSING}
    with pytest.raises(UnexpectedResponseError, match=rf"@ \$\.smtp_list\[{index}\]\.{named}\b"):
        structure_response(
            {"status": "success", "smtp_list": users}, SmtpUserList, status_code=200, converter=FAST
        )


@pytest.mark.parametrize(
    ("odd", "tolerant_reads"), [(None, 0), (1, 1), (4999, 1), (2500, 1), (0, 5000)]
)
def test_only_the_surprising_user_takes_the_tolerant_path(
    odd: int | None, tolerant_reads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A well-formed list never reaches the tolerant path; one odd user alone does.

    A list odd from its first user is taken for a server that spells every user its
    own way, and read by the tolerant path alone.
    """
    import sarv_async._converters as converters

    calls: list[object] = []
    tolerant = converters._tolerant

    def counting(read: Any) -> Any:
        inner = tolerant(read)

        def structure(value: Any, cls: type[Any]) -> Any:
            calls.append(value)
            return inner(value, cls)

        return structure

    monkeypatch.setattr(converters, "_tolerant", counting)
    monkeypatch.setattr(converters, "_converters", {})
    converter = converters._make_converter()
    users = list(BIG)
    if odd is not None:
        users[odd] = {**BIG[odd], "total_limit": str(BIG[odd]["total_limit"])}
    data = {"status": "success", "smtp_list": users}
    answer = structure_response(data, SmtpUserList, status_code=200, converter=converter)
    assert answer.smtp_list == [_user(i) for i in range(5000)]
    assert len(calls) == tolerant_reads


def test_a_non_object_user_is_named_by_its_index() -> None:
    """A list entry that is not an object fails with its index, not a TypeError."""
    users = [*BIG[:3], "smtp4"]
    with pytest.raises(UnexpectedResponseError, match=r"\$\.smtp_list\[3\]"):
        structure_response(
            {"status": "success", "smtp_list": users}, SmtpUserList, status_code=200, converter=FAST
        )


def _user(i: int) -> SmtpUser:
    entry = well_formed(i)
    status = SmtpUserStatus(entry["status"])
    return SmtpUser(
        entry["smtp_user_name"],
        entry["password"],
        status,
        entry["total_limit"],
        entry["hourly_limit"],
    )


def test_the_reader_takes_the_well_formed_shape_in_both_spellings() -> None:
    """The documented shapes (``password`` or ``smtp_password``) need no fall-back."""
    read = make_reader(SmtpUser, aliases=_ALIASES, spellings=_SPELLINGS)
    assert read is not None
    sample = well_formed(7)
    assert read(sample) == _user(7)
    table = {**sample, "smtp_password": sample["password"]}
    del table["password"]
    assert read(table) == _user(7)
    # Both keys: the table's name wins, as on the tolerant path.
    assert read({**sample, "smtp_password": "other"}).smtp_password == "other"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("Enable", SmtpUserStatus.ENABLE),
        ("disabled", SmtpUserStatus.DISABLE),
        (1, SmtpUserStatus.ENABLE),
        (0, SmtpUserStatus.DISABLE),
        ("0", SmtpUserStatus.DISABLE),
    ],
)
def test_the_reader_takes_the_tables_integer_status(status: object, expected: object) -> None:
    """The table's integer status and the common spellings need no fall-back either."""
    read = make_reader(SmtpUser, aliases=_ALIASES, spellings=_SPELLINGS)
    assert read is not None
    assert read({**well_formed(1), "status": status}).status is expected


@pytest.mark.parametrize("status", [True, False, 1.0, 0.0, " Enable", "eNaBlE", None])
def test_the_reader_leaves_other_statuses_to_the_tolerant_path(status: object) -> None:
    """A bool or float equal to 1 or 0, or an odd spelling, is not the reader's to decide."""
    read = make_reader(SmtpUser, aliases=_ALIASES, spellings=_SPELLINGS)
    assert read is not None
    with pytest.raises(Exception):  # noqa: B017, PT011 - any exception means "fall back"
        read({**well_formed(1), "status": status})


def test_users_filled_directly_behave_like_constructed_ones() -> None:
    """A user the reader builds is equal, hashes alike, is frozen and hides its password."""
    read = make_reader(SmtpUser, aliases=_ALIASES, spellings=_SPELLINGS)
    assert read is not None
    user, built = read(well_formed(3)), _user(3)
    assert type(user) is SmtpUser
    assert (user, hash(user), repr(user)) == (built, hash(built), repr(built))
    assert "'***'" in repr(user)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        user.status = SmtpUserStatus.DISABLE  # type: ignore[misc]


def test_a_model_with_a_validator_is_built_through_its_init() -> None:
    """The reader never skips a model's validators: it calls the class then."""
    seen: list[int] = []

    @attrs.frozen
    class Quota:
        name: str
        limit: int = attrs.field(validator=lambda _, __, value: seen.append(value))

    read = make_reader(Quota, aliases={})
    assert read is not None
    assert read({"name": "a", "limit": 5}) == Quota("a", 5)
    assert seen == [5, 5]


def test_a_model_with_fields_it_cannot_check_gets_no_reader() -> None:
    """A field type the reader cannot check exactly (here float) leaves it to cattrs."""

    @attrs.frozen
    class Odd:
        name: str
        ratio: float

    assert make_reader(Odd, aliases={}) is None
