"""The Python samples of README.md and docs/*.md: found, type-checked with mypy, run.

A sample is a fenced ```python block. The line ``<!-- docs-test: no-run -->`` right
before its fence means: type-check it, do not run it (it needs a real account). A
sample may use ``await``, ``async with`` and ``async for`` at top level: it is compiled
with `ast.PyCF_ALLOW_TOP_LEVEL_AWAIT` and run under anyio, and for mypy its body is
wrapped in an ``async def``. A sample that defines ``test_*`` functions is run by pytest; one marked
``<!-- docs-test: subprocess -->`` (it sets process-wide state such as logging or the
tracer provider) runs in a fresh interpreter. A sample of tests right after an ```ini
fence runs with that text as its ``pytest.ini``.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
import types
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs

__all__ = [
    "MARKER",
    "Sample",
    "find_samples",
    "mypy_files",
    "parse_samples",
    "sample_errors",
]

#: What may follow ``docs-test:`` in the comment before a fence.
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<value>[\w-]+)\s*-->\s*$")
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
_KNOWN_MARKERS = frozenset({"no-run", "subprocess"})


@attrs.frozen
class Sample:
    """One ```python block: where it is, its code, and whether it is to be run."""

    #: The Markdown file's path relative to the project root, e.g. ``docs/emulator.md``.
    source: str
    #: The line (from 1) of the block's first line of code.
    line: int
    code: str
    run: bool
    #: Run in a fresh interpreter (the sample sets process-wide state: logging, tracing).
    isolated: bool = False
    #: The ```ini block right before the sample, if any: a sample of tests runs with it
    #: as its ``pytest.ini`` (and warnings as errors).
    ini: str | None = None

    @property
    def id(self) -> str:
        """The test id: ``file:line``."""
        return f"{self.source}:{self.line}"

    @property
    def module_name(self) -> str:
        """A module name unique to the sample, for the type checker."""
        stem = re.sub(r"\W", "_", self.source.removesuffix(".md"))
        return f"sample_{stem}_{self.line}"

    def compile(self) -> types.CodeType:
        """The sample's code object, top-level ``await`` allowed."""
        code: types.CodeType = compile(
            self.code, self.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )
        return code

    @property
    def is_async(self) -> bool:
        """Whether the sample awaits at top level (so it runs as a coroutine)."""
        code = self.compile()
        return bool(code.co_flags & inspect.CO_COROUTINE)

    @property
    def defines_tests(self) -> bool:
        """Whether the sample defines pytest test functions."""
        tree = ast.parse(self.code)
        return any(
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
            for node in tree.body
        )

    @property
    def uses_asyncio(self) -> bool:
        """Whether the sample is written for asyncio itself (so it does not run on trio)."""
        return bool(re.search(r"^\s*(import|from) asyncio\b", self.code, re.MULTILINE))

    def checked_source(self) -> tuple[str, int]:
        """The module mypy checks, and how many lines precede the sample's first one.

        mypy rejects top-level ``async with``, so an async sample becomes the body of an
        ``async def``.
        """
        if not self.is_async:
            return self.code, 0
        return "async def _sample() -> None:\n" + textwrap.indent(self.code, "    "), 1


def parse_samples(source: str, text: str) -> list[Sample]:
    """The ```python blocks of one Markdown text; ``source`` names it in test ids."""
    samples: list[Sample] = []
    lines = text.splitlines()
    number = 0
    ini: str | None = None  # the text of an ```ini fence, for the fence right after it
    while number < len(lines):
        fence = _FENCE.match(lines[number])
        if fence is None:
            number += 1
            continue
        start = number
        indent = fence["indent"]
        number += 1
        body: list[str] = []
        while number < len(lines) and lines[number].strip() != "```":
            body.append(lines[number].removeprefix(indent))
            number += 1
        number += 1  # the closing fence
        before, ini = ini, None
        if fence["lang"] == "ini":
            ini = "\n".join(body) + "\n"
            continue
        if fence["lang"] not in ("python", "py"):
            continue
        value = None
        previous = MARKER.match(lines[start - 1]) if start else None
        if previous is not None:
            value = previous["value"]
            if value not in _KNOWN_MARKERS:
                raise ValueError(f"{source}:{start}: unknown docs-test marker {value!r}")
        code = "\n".join(body) + "\n"
        samples.append(
            Sample(
                source,
                start + 2,
                code,
                run=value != "no-run",
                isolated=value == "subprocess",
                ini=before,
            )
        )
    return samples


def find_samples(root: Path) -> list[Sample]:
    """Every sample of README.md and of each docs/*.md, in file order."""
    paths = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    samples: list[Sample] = []
    for path in paths:
        source = path.relative_to(root).as_posix()
        samples += parse_samples(source, path.read_text(encoding="utf-8"))
    return samples


def mypy_files(samples: Iterable[Sample], directory: Path) -> dict[Path, Sample]:
    """Write each sample as a module into ``directory``; return file to sample."""
    files: dict[Path, Sample] = {}
    for sample in samples:
        path = directory / f"{sample.module_name}.py"
        text, _ = sample.checked_source()
        path.write_text(text, encoding="utf-8")
        files[path] = sample
    return files


_MYPY_LINE = re.compile(r"^(?P<path>[^:\n]+\.py):(?P<line>\d+): (?P<rest>.*)$")


def sample_errors(report: str, files: Mapping[Path, Sample]) -> dict[str, list[str]]:
    """mypy's lines per sample id, renumbered to the Markdown file's lines."""
    by_name = {path.name: sample for path, sample in files.items()}
    found: dict[str, list[str]] = {sample.id: [] for sample in files.values()}
    for line in report.splitlines():
        match = _MYPY_LINE.match(line)
        if match is None:
            continue
        sample = by_name.get(Path(match["path"]).name)
        if sample is None:
            continue
        _, offset = sample.checked_source()
        where = sample.line + int(match["line"]) - 1 - offset
        found[sample.id].append(f"{sample.source}:{where}: {match['rest']}")
    return found
