"""Development sessions: ``nox -s tests lint typing docs`` (``pip install nox``).

``tests`` runs on every Python the classifiers claim (``nox -s tests-3.12``);
``tests_lowest`` with the lowest versions pyproject allows of the runtime dependencies,
``tests_newest`` with the newest. Arguments after ``--`` go to pytest (``tests_lowest``
leaves out tests/docs unless given arguments).
"""

from __future__ import annotations

import re
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typing", "docs"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)


def install(session: nox.Session, *groups: str, extras: str = "emulator,cli") -> None:
    """Install the project (with extras) and dependency groups into the session."""
    session.install(f".[{extras}]")
    session.install(*nox.project.dependency_groups(PYPROJECT, *groups))


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (asyncio and trio, unit and loopback integration tests)."""
    install(session, "tests")
    session.run("pytest", *session.posargs)


def lowest_versions() -> list[str]:
    """``name==X`` for each runtime dependency's (and the emulator and cli extras') floor."""
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    pins = []
    for requirement in [*project["dependencies"], *extras["emulator"], *extras["cli"]]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)", requirement)
        if match is None:
            raise ValueError(f"not of the form name>=version: {requirement!r}")
        pins.append(f"{match[1]}=={match[2]}")
    return pins


@nox.session(python=PYTHONS[0])
def tests_lowest(session: nox.Session) -> None:
    """Run the tests with the lowest dependency versions pyproject allows, on the oldest Python."""
    constraints = Path(session.create_tmp()) / "lowest.txt"
    constraints.write_text("\n".join(lowest_versions()) + "\n")
    session.install("-c", str(constraints), ".[emulator,cli]")
    session.install("-c", str(constraints), *nox.project.dependency_groups(PYPROJECT, "tests"))
    session.run("python", "-m", "pip", "list", "--format=freeze")
    # The docs' samples are type-checked against the newest stubs (httpx 0.27 types an
    # ASGI app's return as Coroutine, not Awaitable): `tests` and `tests_newest` run them.
    session.run("pytest", *(session.posargs or ["--ignore=tests/docs"]))


@nox.session(python=PYTHONS[-1])
def tests_newest(session: nox.Session) -> None:
    """Run the tests with the newest versions of every dependency, on the newest Python."""
    session.install(
        "--upgrade",
        "--upgrade-strategy",
        "eager",
        ".[emulator,cli]",
        *nox.project.dependency_groups(PYPROJECT, "tests"),
    )
    session.run("python", "-m", "pip", "list", "--format=freeze")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Lint and check formatting with ruff."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """Type-check the package, tests and benchmarks with mypy --strict."""
    install(session, "typing")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ (open site/index.html), failing on warnings."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "docs"))
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")
    session.log("the site is in site/: open site/index.html, or run 'mkdocs serve'")
