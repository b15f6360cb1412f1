"""The emulator answers like the provider's documents, key by key.

The samples are read from the documents themselves (``tests/data/seeds/``): every
PHP ``print_r`` block ``Array ( [key] => value ... )`` under each ``/settings/...``
heading, nested ``array(...)`` lists included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sarv_async.testing import Emulator

from ._support import loopback_client, post

pytestmark = pytest.mark.anyio

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seeds"
SEED_FILES = sorted(SEEDS.glob("*-smtp-users-api.txt"))
CALLS = ["addSmtp", "editSmtp", "resetSmtpPassword", "listSmtp"]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<open>[Aa]rray\s*\()
      | (?P<close>\))
      | (?P<comma>,)
      | \[(?P<key>\w+)\]\s*=>
      | "(?P<string>[^"]*)"
      | (?P<integer>-?\d+)
    )""",
    re.VERBOSE,
)


def _parse_array(text: str, pos: int) -> tuple[Any, int]:
    """Parse the ``Array(...)`` whose opening starts at ``pos``; return it and where it ends."""
    match = _TOKEN.match(text, pos)
    assert match, text[pos : pos + 40]
    assert match["open"], text[pos : pos + 40]
    pos = match.end()
    entries: dict[str, Any] = {}
    items: list[Any] = []
    while True:
        match = _TOKEN.match(text, pos)
        assert match, f"cannot read the sample at {text[pos : pos + 40]!r}"
        if match["close"]:
            assert not (entries and items), "a sample mixes keys and list items"
            return (items if items else entries), match.end()
        if match["comma"]:
            pos = match.end()
        elif match["open"]:
            item, pos = _parse_array(text, pos)
            items.append(item)
        elif match["key"]:
            entries[match["key"]], pos = _parse_value(text, match.end())
        else:
            raise AssertionError(f"unexpected {match.group().strip()!r} in a sample")


def _parse_value(text: str, pos: int) -> tuple[Any, int]:
    match = _TOKEN.match(text, pos)
    assert match, text[pos : pos + 40]
    if match["open"]:
        return _parse_array(text, pos)
    if match["string"] is not None:
        return match["string"], match.end()
    if match["integer"] is not None:
        return int(match["integer"]), match.end()
    raise AssertionError(f"unexpected {match.group().strip()!r} as a value")


def document_samples(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every distinct sample answer in a seed document, by call name."""
    text = path.read_text(encoding="utf-8")
    headings = list(re.finditer(r"^/settings/(\w+)\s*$", text, re.MULTILINE))
    samples: dict[str, list[dict[str, Any]]] = {}
    for heading, following in zip(headings, [*headings[1:], None], strict=True):
        section = text[heading.end() : following.start() if following else len(text)]
        found: list[dict[str, Any]] = []
        for start in re.finditer(r"^Array\s*$", section, re.MULTILINE):
            sample, _ = _parse_array(section, start.start())
            if sample not in found:
                found.append(sample)
        samples[heading[1]] = found
    return samples


def _sample(path: Path, call: str, status: str) -> dict[str, Any]:
    [sample] = [s for s in document_samples(path)[call] if s["status"] == status]
    return sample


def _ids(path: Path) -> str:
    return path.name.split("-")[0]


def test_the_documents_have_a_success_and_an_error_sample_per_call() -> None:
    """Both brandings document the four calls, each with one success and one error sample."""
    assert [p.name for p in SEED_FILES] == [
        "sarv-smtp-users-api.txt",
        "sendclean-smtp-users-api.txt",
    ]
    for path in SEED_FILES:
        samples = document_samples(path)
        assert sorted(samples) == sorted(CALLS)
        for call in CALLS:
            assert sorted(s["status"] for s in samples[call]) == ["error", "success"]
    listed = _sample(SEED_FILES[0], "listSmtp", "success")["smtp_list"]
    assert listed[1] == {
        "smtp_user_name": "smtps456567",
        "password": "fdsdfs",
        "status": "Disable",
        "total_limit": 100,
        "hourly_limit": 30,
    }


@pytest.fixture(scope="module")
def shared() -> Iterator[Emulator]:
    """One demo emulator for the module."""
    with Emulator() as emulator:
        yield emulator


async def _answers(emu: Emulator) -> dict[str, dict[str, Any]]:
    """One success answer per call, for a user that was created, edited and listed."""
    emu.reset()
    async with loopback_client(emu.url) as http:
        add = (await post(http, "addSmtp", "demo", total_limit=200, hourly_limit=20)).json()
        name = add["smtp_user_name"]
        await post(http, "addSmtp", "demo", total_limit=100, hourly_limit=30)
        edit = await post(http, "editSmtp", "demo", smtp_user_name=name, status="Disable")
        reset = await post(http, "resetSmtpPassword", "demo", smtp_user_name=name)
        listed = await post(http, "listSmtp", "demo")
    return {
        "addSmtp": add,
        "editSmtp": edit.json(),
        "resetSmtpPassword": reset.json(),
        "listSmtp": listed.json(),
    }


def _same_shape(answer: Any, sample: Any, where: str = "$") -> None:
    """Same keys in the same order, same JSON types, recursively (lists: every item)."""
    assert type(answer) is type(sample), f"{where}: {answer!r} vs the sample's {sample!r}"
    if isinstance(sample, dict):
        assert list(answer) == list(sample), f"{where}: keys differ"
        for key in sample:
            _same_shape(answer[key], sample[key], f"{where}.{key}")
    elif isinstance(sample, list):
        assert answer, f"{where}: empty where the sample has items"
        for i, item in enumerate(answer):
            _same_shape(item, sample[0], f"{where}[{i}]")


@pytest.mark.parametrize("seed", SEED_FILES, ids=_ids)
@pytest.mark.parametrize("call", CALLS)
async def test_success_answers_match_the_documented_sample(
    shared: Emulator, seed: Path, call: str
) -> None:
    """Each success answer has the sample's keys, types and fixed texts."""
    sample = _sample(seed, call, "success")
    answer = (await _answers(shared))[call]
    _same_shape(answer, sample)
    assert answer["status"] == sample["status"] == "success"
    if "message" in sample:
        assert answer["message"] == sample["message"]
    for key in ("smtp_user_name", "smtp_password", "password"):
        for got, documented in _values(answer, sample, key):
            assert re.fullmatch(r"[a-z0-9]+", got)
            if key == "smtp_user_name":
                assert re.fullmatch(r"smtps?\d+", got)
                assert re.fullmatch(r"smtps?\d+", documented)
    if call == "listSmtp":
        statuses = {u["status"] for u in answer["smtp_list"]}
        assert statuses == {u["status"] for u in sample["smtp_list"]} == {"Enable", "Disable"}


def _values(answer: dict[str, Any], sample: dict[str, Any], key: str) -> Iterator[tuple[str, str]]:
    """Pairs of (answer's, sample's) values of ``key``, at the top level or in the list."""
    if key in sample:
        yield answer[key], sample[key]
    for got, documented in zip(
        answer.get("smtp_list", []), sample.get("smtp_list", []), strict=False
    ):
        if key in documented:
            yield got[key], documented[key]


@pytest.mark.parametrize("seed", SEED_FILES, ids=_ids)
@pytest.mark.parametrize("call", CALLS)
async def test_error_answers_equal_the_documented_sample(
    shared: Emulator, seed: Path, call: str
) -> None:
    """A token mismatch answers exactly the documented error envelope, with HTTP 200."""
    async with loopback_client(shared.url) as http:
        response = await http.post(
            f"/v1.0/settings/{call}",
            json={"owner_id": "demo", "token": "not-the-token", "smtp_user_name": "smtp1"},
        )
    assert response.status_code == 200
    assert response.json() == _sample(seed, call, "error")
    assert list(response.json()) == list(_sample(seed, call, "error"))
