"""The samples harness itself: what it finds, what it runs, how it reports mypy's errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ._samples import find_samples, mypy_files, parse_samples, sample_errors

PAGE = """\
# A page

```python
print("plain")
```

<!-- docs-test: no-run -->
```python
await account_only()
```

```console
python not-a-sample.py
```

- in a list:

  ```python
  async with thing() as t:
      pass
  ```
"""


def test_blocks_are_found_with_their_lines_and_markers() -> None:
    """Each python block is a sample at its first code line; no-run applies to the next only."""
    plain, no_run, indented = parse_samples("docs/page.md", PAGE)
    assert (plain.id, plain.run, plain.is_async) == ("docs/page.md:4", True, False)
    assert (no_run.id, no_run.run, no_run.is_async) == ("docs/page.md:9", False, True)
    assert indented.id == "docs/page.md:19"
    assert indented.code == "async with thing() as t:\n    pass\n"
    assert indented.is_async


def test_an_ini_fence_configures_the_next_sample_only() -> None:
    """An ```ini block is the pytest.ini of the python block right after it, of no other."""
    page = (
        "```ini\n[pytest]\nasyncio_mode = auto\n```\n\n```python\npass\n```\n```python\npass\n```\n"
    )
    configured, plain = parse_samples("docs/x.md", page)
    assert configured.ini == "[pytest]\nasyncio_mode = auto\n"
    assert plain.ini is None


def test_the_subprocess_marker_isolates_a_sample() -> None:
    """``docs-test: subprocess``: run, in a fresh interpreter."""
    [sample] = parse_samples("docs/x.md", "<!-- docs-test: subprocess -->\n```python\npass\n```\n")
    assert (sample.run, sample.isolated) == (True, True)
    assert not parse_samples("docs/x.md", PAGE)[0].isolated


def test_an_unknown_marker_is_an_error() -> None:
    """A typo in a marker fails loudly instead of silently running (or not) a sample."""
    with pytest.raises(
        ValueError, match=re.escape("docs/x.md:1: unknown docs-test marker 'norun'")
    ):
        parse_samples("docs/x.md", "<!-- docs-test: norun -->\n```python\npass\n```\n")


def test_new_pages_are_discovered(tmp_path: Path) -> None:
    """A page added to docs/ is covered without being listed anywhere."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("```python\npass\n```\n")
    (tmp_path / "docs" / "new-page.md").write_text("text\n\n```python\nx = 1\n```\n")
    assert [s.id for s in find_samples(tmp_path)] == ["README.md:2", "docs/new-page.md:4"]


def test_mypy_lines_point_into_the_markdown_file(tmp_path: Path) -> None:
    """An error in a wrapped async sample is reported at its line in the page."""
    _, _, indented = parse_samples("docs/page.md", PAGE)
    files = mypy_files([indented], tmp_path)
    (path,) = files
    assert path.read_text().startswith("async def _sample() -> None:\n    async with")
    report = f'{path}:2: error: Name "thing" is not defined  [name-defined]\n'
    assert sample_errors(report, files) == {
        "docs/page.md:19": ['docs/page.md:19: error: Name "thing" is not defined  [name-defined]']
    }
