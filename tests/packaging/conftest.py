"""The release artefacts, built once per session with ``scripts/release``.

The build runs from a copy of the tree (the files the release reads), so that a file
edited while the suite runs cannot make one build differ from the next, and writes
into a temporary ``dist``. Downloaded wheels are kept in pytest's cache between
sessions (they are checked against ``packaging/requirements.lock`` either way).

Unlike the other test folders this one is not a package: ``tests/packaging/__init__.py``
would make a package named ``packaging`` that hides the library of that name (pip's,
setuptools'). Its test files are named ``test_release_*`` so they clash with no other.

Nothing here needs root: dpkg installs into a throwaway root with --force-not-root.
``dpkg-deb`` (Debian's dpkg) is the only tool whose absence skips these tests; the
others (systemd-analyze, lintian, the binutils that strip the wheels' native code)
come from ``.ci/setup`` and fail a test when missing.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What scripts/release reads; a test build copies only these.
INPUTS = (
    "pyproject.toml",
    "README.md",
    "config.example.toml",
    "src",
    "systemd",
    "packaging",
    "scripts",
)
BUILD_TIMEOUT = 600
SYSTEM_PYTHON = "/usr/bin/python3"


@functools.cache
def load_release_script() -> ModuleType:
    """scripts/release.py as a module, for its constants (targets, unit edits)."""
    spec = importlib.util.spec_from_file_location("hookgate_release", ROOT / "scripts/release.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Release:
    """One build's outputs, and the copy of the tree it was built from."""

    tree: Path
    dist: Path
    wheel_cache: Path
    epoch: int

    @property
    def zipapp(self) -> Path:
        return self.dist / "hookgate"

    @property
    def version(self) -> str:
        return str(load_release_script().project()["version"])

    @property
    def deb_version(self) -> str:
        return str(load_release_script().debian_version(self.version))

    def deb(self, arch: str) -> Path:
        return self.dist / f"hookgate_{self.deb_version}_{arch}.deb"


def copy_tree(destination: Path) -> Path:
    for name in INPUTS:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source,
                destination / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
            )
        else:
            shutil.copy2(source, destination / name)
    return destination


def last_commit_time() -> int:
    result = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%ct"],
        capture_output=True,
        text=True,
        check=False,
    )
    return int(result.stdout.strip()) if result.returncode == 0 else 1_700_000_000


def run_release(tree: Path, dist: Path, wheel_cache: Path, epoch: int) -> None:
    """``scripts/release --out dist`` in ``tree``, on this venv's Python (which has shiv)."""
    result = subprocess.run(
        [str(tree / "scripts" / "release"), "--out", str(dist), "--wheel-cache", str(wheel_cache)],
        env={**os.environ, "PYTHON": sys.executable, "SOURCE_DATE_EPOCH": str(epoch)},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"scripts/release failed:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Release:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is missing (Debian package dpkg): scripts/release cannot build")
    tree = copy_tree(tmp_path_factory.mktemp("tree"))
    cache = getattr(pytestconfig, "cache", None)  # None with -p no:cacheprovider
    wheel_cache = (
        cache.mkdir("release-wheels") if cache else tmp_path_factory.mktemp("release-wheels")
    )
    built = Release(tree, tmp_path_factory.mktemp("dist"), wheel_cache, last_commit_time())
    run_release(built.tree, built.dist, built.wheel_cache, built.epoch)
    return built


@pytest.fixture(scope="session")
def release_script() -> ModuleType:
    return load_release_script()


@pytest.fixture
def build_again(release: Release, tmp_path: Path) -> Path:
    """A second build of the same tree, into its own dist; its path."""
    dist = tmp_path / "dist-again"
    run_release(release.tree, dist, release.wheel_cache, release.epoch)
    return dist


@pytest.fixture(scope="session")
def system_python() -> str:
    """Debian's python3, which knows nothing of this venv."""
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} is missing: the artefacts are for the system's python3")
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(sys.prefix); print(sys.version_info >= (3, 11))"],
        capture_output=True,
        text=True,
        check=True,
    )
    prefix, recent = probe.stdout.split()
    assert recent == "True", f"{SYSTEM_PYTHON} is older than 3.11"
    assert Path(prefix).resolve() != Path(sys.prefix).resolve(), "the system python is this venv's"
    return SYSTEM_PYTHON


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """A login-like environment: no venv on PATH, no PYTHONPATH, a home of its own."""
    home = tmp_path / "home"
    home.mkdir()
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
