"""The documentation site: it builds strict, its code is highlighted, its text has no reST.

The site is built once per run (`mkdocs build --strict`, a few seconds) into a
temporary directory, and its HTML is read: samples highlighted by Pygments, no reST marker
(a ``::`` literal block, double backticks, a ``:class:`` role) left in the text outside
code, every public name documented once in the reference, the README's sections in the
overview, the benchmark charts drawn from bench/results.json.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import sarv_async
import sarv_async.testing
import sarv_async.tracing
from tests.once import once_per_run

from ._samples import find_samples, parse_samples

ROOT = Path(__file__).resolve().parents[2]
_INCLUDE = re.compile(r'^\s*-{1,}8<-{1,}\s+"(?P<path>[^":]+)(?::(?P<section>[\w-]+))?"\s*$')


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built strict (any warning fails the build), once per run."""

    def build(directory: Path) -> None:
        built = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(directory)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
            check=False,
        )
        assert built.returncode == 0, built.stderr

    return once_per_run(tmp_path_factory, "docs-site", build)


def page(site: Path, name: str) -> str:
    """The HTML of one page: ``index``, ``reference``..."""
    path = site / "index.html" if name == "index" else site / name / "index.html"
    return path.read_text(encoding="utf-8")


def prose(page_html: str) -> str:
    """The page's article as text: code blocks, inline code and tags taken out."""
    article = page_html.split('<article class="md-content__inner', 1)[-1]
    article = article.split("</article>", 1)[0]
    article = re.sub(r"<(pre|code|script|style|svg)\b.*?</\1>", " ", article, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", article))


#: What reST leaves in Markdown's rendering: a literal-block ``::``, double backticks, roles.
REST_MARKERS = re.compile(
    r"(?:^|\s|\w)::(?:\s|$)|``|:(?:class|func|meth|attr|mod|exc|obj|data|ref|doc|py:\w+):`"
    r"|^\.\. [\w-]+::",
    re.MULTILINE,
)


def test_rest_markers_are_recognised() -> None:
    """The check finds what reST leaves behind, and leaves Markdown's text alone."""
    for text in ("Example::\n", "::\n", "use ``x`` here", "see :class:`Ledger`", ".. note::"):
        assert REST_MARKERS.search(text), text
    for text in ("connect to ::1 or 127.0.0.1", "a: b", "`x`", "std::vector"):
        assert not REST_MARKERS.search(text), text


@pytest.mark.slow
def test_pages_show_no_rest_markers(site: Path) -> None:
    """No page's text, the API reference's above all, shows a reST marker."""
    found = {}
    for path in sorted(site.rglob("*.html")):
        hits = [m.group(0).strip() for m in REST_MARKERS.finditer(prose(path.read_text("utf-8")))]
        if hits:
            found[path.relative_to(site).as_posix()] = hits
    assert not found


def test_code_is_highlighted(site: Path) -> None:
    """Samples are highlighted by Pygments on the overview, a concept page and the reference."""
    for name in ("index", "models", "reference"):
        text = page(site, name)
        blocks = re.findall(r'<div class="language-python highlight">', text)
        assert blocks, name
        # Keywords and names marked up as tokens, not plain text in a <pre>.
        assert re.search(r'<span class="(k|kn)">(import|async|await|from)</span>', text), name


def test_theme_has_copy_buttons_palettes_and_search(site: Path) -> None:
    """Material for MkDocs, with copy buttons, a light and a dark palette, and search."""
    text = page(site, "index")
    assert "content.code.copy" in text
    assert 'data-md-color-scheme="default"' in text
    assert text.count('class="md-option"') >= 3  # automatic, light, dark
    assert "slate" in text
    assert (site / "search" / "search_index.json").exists()
    assert 'href="https://github.com/sarv-async/sarv-async"' in text


def _public_names() -> list[str]:
    modules: list[types.ModuleType] = [sarv_async, sarv_async.testing, sarv_async.tracing]
    return [f"{module.__name__}.{name}" for module in modules for name in module.__all__]


def test_reference_documents_every_public_name_once(site: Path) -> None:
    """Each name of the three modules' ``__all__`` has one entry, in order of concept."""
    source = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    directives = re.findall(r"^::: (\S+)\s*$", source, flags=re.MULTILINE)
    modules = {"sarv_async.testing.pytest_plugin", "sarv_async.testing.answers"}
    documented = [name for name in directives if name not in modules]
    assert sorted(documented) == sorted(_public_names())
    assert len(set(documented)) == len(documented)
    text = page(site, "reference")
    for name in _public_names():
        assert f'id="{name}"' in text, name
    # The client first, the errors after the calls and models.
    order = [text.index(f'id="sarv_async.{name}"') for name in ("AsyncSarvClient", "SmtpUsers")]
    order += [text.index(f'id="sarv_async.{name}"') for name in ("SmtpUser", "SarvError")]
    assert order == sorted(order)


@pytest.mark.slow
def test_every_public_name_has_a_summary() -> None:
    """Each name the reference documents opens with a one-line summary (its docstring's)."""
    import griffe  # the docs group's mkdocstrings brings it

    package = griffe.load("sarv_async", search_paths=[str(ROOT)])
    missing = []
    for name in _public_names():
        found = package[name.removeprefix("sarv_async.")]
        docstring = found.docstring.value.strip() if found.docstring else ""
        if not docstring or not docstring.splitlines()[0].strip():
            missing.append(name)
    assert not missing


def test_overview_includes_the_readme(site: Path) -> None:
    """The overview shows the README's marked sections (written once, tested from there)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    text = page(site, "index")
    for sample in parse_samples("README.md", readme):
        last_line = sample.code.strip().splitlines()[-1]
        tokens = "".join(re.findall(r">([^<]*)<", text))  # Pygments splits lines into spans
        assert html.escape(last_line, quote=False) in html.escape(html.unescape(tokens)), last_line
    assert "--8&lt;--" not in text
    assert "8<-" not in prose(text)


def test_included_files_hold_no_sample_the_harness_misses() -> None:
    """Snippets pull files into pages; the harness reads README.md and docs/*.md themselves.

    A sample in any other included file would be shown but never run; a page included in
    another would be run twice. Each included section must exist.
    """
    harnessed = {ROOT / "README.md", *(ROOT / "docs").glob("*.md")}
    included = []
    for path in sorted((ROOT / "docs").glob("*.md")):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = _INCLUDE.match(line)
            if match is not None:
                included.append((ROOT / match["path"], match["section"]))
    assert (ROOT / "README.md", "usage") in included
    for target, section in included:
        text = target.read_text(encoding="utf-8")
        assert target.parent != ROOT / "docs", f"{target} is a page: its samples would run twice"
        if section is not None:
            assert f"--8<-- [start:{section}]" in text, (target, section)
            assert f"--8<-- [end:{section}]" in text, (target, section)
        if target not in harnessed:
            assert not parse_samples(target.name, text), f"{target}'s samples are never run"
    readme_samples = [sample for sample in find_samples(ROOT) if sample.source == "README.md"]
    assert len(readme_samples) >= 3


def _charts() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("bench_charts", ROOT / "bench" / "charts.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_charts_are_drawn_from_the_recorded_figures(site: Path) -> None:
    """Each chart is an inline SVG, with a table of the numbers of bench/results.json."""
    text = page(site, "benchmarks")
    assert "<!-- chart:" not in text
    charts = re.findall(r'<figure class="bench-chart"><svg[^>]*>.*?</svg>', text, flags=re.S)
    assert len(charts) >= 3
    assert "<img" not in "".join(charts)
    results = json.loads((ROOT / "bench" / "results.json").read_text(encoding="utf-8"))
    for entry in results["entries"].values():
        assert html.escape(entry["command"]) in text, entry["command"]
        if entry["bench"] == "bench_pacing":
            assert f"{entry['figures']['elapsed_s']:.2f} s" in text


def test_a_chart_without_figures_is_an_error() -> None:
    """No figures, no chart: the hook's warning fails the strict build."""
    charts = _charts()
    page_html = "<p>before</p>\n<!-- chart: pacing -->\n<p>after</p>"
    with pytest.raises(charts.MissingFigures, match="bench_pacing"):
        charts.render_charts(page_html, {"entries": {}})
    with pytest.raises(charts.MissingFigures, match="no chart is named"):
        charts.render_charts("<!-- chart: nonesuch -->", {"entries": {}})


def test_pacing_chart_draws_the_server_allowance() -> None:
    """The allowance steps by each window's limit; answers are drawn one step per call."""
    charts = _charts()
    assert charts._allowance([[10, 1.0], [50, 10.0]], 6.0) == [
        (0.0, 10),
        (1.0, 20),
        (2.0, 30),
        (3.0, 40),
        (4.0, 50),
        (5.0, 50),
        (6.0, 50),
    ]
    entry = {
        "bench": "bench_pacing",
        "case": {"calls": 3, "rate": "2/second", "backend": "trio"},
        "figures": {
            "answered_s": [0.01, 0.02, 1.07],
            "ideal_s": 1.5,
            "bound_s": 2.5,
            "elapsed_s": 1.07,
            "windows": [[2, 1.0]],
            "http_429": 0,
        },
        "recorded": "2026-01-01T00:00Z",
        "commit": "abc1234",
        "python": "3.11.7",
        "machine": "test",
        "command": "python bench/bench_pacing.py --calls 3",
    }
    drawn = charts.render_charts("<!-- chart: pacing -->", {"entries": {"k": entry}})
    assert drawn.count("<polyline") == 2
    assert "3 list calls at 2/second (trio)" in drawn
    assert "<td>1.07 s</td>" in drawn
