"""scripts/release: what it puts in dist/, and that building again gives the same bytes."""

from __future__ import annotations

import hashlib
import re
import subprocess
import zipfile
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# site-packages/uvloop/loop.cpython-312-aarch64-linux-gnu.so
NATIVE = re.compile(
    r"site-packages/(?P<module>.+)\.cpython-(?P<abi>\d+)-(?P<arch>\w+)-linux-gnu\.so"
)
# The libraries whose compiled code hookgate runs on every request.
HOT_NATIVE_MODULES = {
    "aiohttp/_http_parser",
    "msgspec/_core",
    "multidict/_multidict",
    "orjson/orjson",
    "uvloop/loop",
    "yarl/_quoting_c",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def native_files(archive: zipfile.ZipFile) -> dict[str, set[tuple[str, str]]]:
    """``{module: {(abi, arch), ...}}`` for every compiled module in a zipapp."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for name in archive.namelist():
        if match := NATIVE.fullmatch(name):
            found[match["module"]].add((match["abi"], match["arch"]))
    return found


def embedded_zipapp(deb: Path, tmp_path: Path) -> zipfile.ZipFile:
    """/usr/bin/hookgate from a .deb, opened as the zip it is."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    return zipfile.ZipFile(tmp_path / "usr" / "bin" / "hookgate")


def test_sha256sums_lists_every_artefact(release) -> None:
    listed = {}
    for line in (release.dist / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ")
        listed[name] = digest
    assert set(listed) == {"hookgate", release.deb("amd64").name, release.deb("arm64").name}
    assert {name: sha256(release.dist / name) for name in listed} == listed


def test_building_again_gives_identical_bytes(release, build_again: Path) -> None:
    """Same tree, same SOURCE_DATE_EPOCH, same lock: byte-identical zipapp and packages."""
    first = (release.dist / "SHA256SUMS").read_text(encoding="utf-8")
    assert (build_again / "SHA256SUMS").read_text(encoding="utf-8") == first


def test_zipapp_carries_native_code_for_every_target(release, release_script: ModuleType) -> None:
    targets = {(t.python.replace(".", ""), t.arch) for t in release_script.TARGETS}
    assert {abi for abi, _ in targets} >= {"311", "312", "313"}
    assert {arch for _, arch in targets} == {"x86_64", "aarch64"}
    with zipfile.ZipFile(release.zipapp) as archive:
        found = native_files(archive)
        assert HOT_NATIVE_MODULES <= set(found)
        incomplete = {module: targets - have for module, have in found.items() if have != targets}
        assert not incomplete, f"compiled modules missing for some targets: {incomplete}"
        # Stripped, as dh_strip would: debug sections are most of an unstripped wheel.
        loop = archive.read("site-packages/uvloop/loop.cpython-311-x86_64-linux-gnu.so")
        assert b".debug_info" not in loop


@pytest.mark.parametrize(("deb_arch", "arch"), [("amd64", "x86_64"), ("arm64", "aarch64")])
def test_each_package_carries_its_own_architecture_only(
    release, release_script: ModuleType, tmp_path: Path, deb_arch: str, arch: str
) -> None:
    pythons = {python.replace(".", "") for python in release_script.PYTHONS}
    with embedded_zipapp(release.deb(deb_arch), tmp_path) as archive:
        found = native_files(archive)
        assert HOT_NATIVE_MODULES <= set(found)
        for module, have in found.items():
            assert have == {(abi, arch) for abi in pythons}, module
    # The package's copy is run by Debian's interpreter, not whatever python3 is first on PATH.
    with (tmp_path / "usr" / "bin" / "hookgate").open("rb") as file:
        assert file.readline() == b"#!/usr/bin/python3\n"
    with release.zipapp.open("rb") as file:
        assert file.readline() == b"#!/usr/bin/env python3\n"
