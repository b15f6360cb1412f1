"""What the sdist and the wheel hold, and what the package index shows of the project."""

from __future__ import annotations

import contextlib
import email
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built in process by hatchling's build hooks."""
    from hatchling.build import build_sdist, build_wheel

    out = tmp_path_factory.mktemp("dist")
    with contextlib.chdir(ROOT):
        build_sdist(str(out))
        build_wheel(str(out))
    return out


def _wheel(dist: Path) -> zipfile.ZipFile:
    [path] = dist.glob("*.whl")
    return zipfile.ZipFile(path)


def _metadata(dist: Path) -> email.message.Message:
    with _wheel(dist) as wheel:
        [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(wheel.read(name))


@pytest.mark.slow
def test_the_wheel_carries_the_license(dist: Path) -> None:
    """The MIT text is in the wheel, and the metadata names it."""
    with _wheel(dist) as wheel:
        [license_file] = [n for n in wheel.namelist() if n.endswith("licenses/LICENSE")]
        assert b"MIT License" in wheel.read(license_file)
    metadata = _metadata(dist)
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]


def test_the_metadata_has_every_project_url_and_the_trio_extra(dist: Path) -> None:
    """Homepage, Documentation, Source, Issues and Changelog; a ``trio`` extra."""
    metadata = _metadata(dist)
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert set(urls) >= {"Homepage", "Documentation", "Source", "Issues", "Changelog"}
    assert all(url.startswith("https://") for url in urls.values())
    assert "trio" in (metadata.get_all("Provides-Extra") or [])
    assert any(
        req.startswith("trio") and "extra == 'trio'" in req
        for req in metadata.get_all("Requires-Dist") or []
    )


def test_the_sdist_has_what_building_docs_and_running_tests_and_benchmarks_need(
    dist: Path,
) -> None:
    """LICENSE, docs and mkdocs.yml, bench, tests, noxfile."""
    [path] = dist.glob("*.tar.gz")
    with tarfile.open(path) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in (
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "mkdocs.yml",
        "noxfile.py",
        "docs/sync.md",
        "docs/testing.md",
        "bench/README.md",
        "tests/conftest.py",
        "sarv_async/py.typed",
    ):
        assert needed in names, needed


def test_readme_links_work_on_the_package_index() -> None:
    """The README is the index's project page: its links are absolute."""
    links = re.findall(r"\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert links
    relative = [link for link in links if not link.startswith(("https://", "http://", "#"))]
    assert not relative, relative
    base = "https://github.com/sarv-async/sarv-async/blob/main/"
    for link in links:
        if link.startswith(base):
            assert (ROOT / link.removeprefix(base).split("#")[0]).exists(), link
