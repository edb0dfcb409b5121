"""Build hookgate's release artefacts, reproducibly. Run it as ``scripts/release``.

Into ``dist/`` (or ``--out DIR``):

- ``hookgate``: one executable file, a shiv zipapp of hookgate and its libraries,
  with the compiled wheels for CPython 3.11 to 3.14 on Linux x86_64 and aarch64
  (manylinux, glibc >= 2.28) side by side. It runs on the system's ``python3``.
- ``hookgate_<version>_amd64.deb`` and ``hookgate_<version>_arm64.deb``: the same
  zipapp with only that architecture's native code (run by ``/usr/bin/python3``),
  the systemd unit, ``/etc/hookgate/hookgate.toml`` as a conffile, and maintainer
  scripts that never start the service before a config exists.
- ``SHA256SUMS``.

Reproducible: every timestamp is ``SOURCE_DATE_EPOCH`` (the last commit's time
unless set), the dependency wheels are exactly those ``packaging/requirements.lock``
pins by hash, file modes are set explicitly and archives list their files in
sorted order, so two builds of the same tree give byte-identical files.
``scripts/release --lock`` resolves the dependencies again for every target and
rewrites the lock.

Why shiv and not pex: shiv's bootstrap is a few lines (``--version`` starts in a
fraction of pex's time), and it takes a ready site-packages directory. A wheel of
each compiled dependency names its native files by interpreter and architecture
(``_http_parser.cpython-312-aarch64-linux-gnu.so``) and every other file is the
same in all of them, so the wheels for all eight targets unpack into one
directory and Python picks the file that fits; ``unpack_wheel`` checks that
nothing else differs. Like pex, the zipapp unpacks itself once per version (into
``~/.shiv``, or ``$SHIV_ROOT``): native code cannot be loaded from inside a zip.
"""

from __future__ import annotations

import argparse
import email.parser
import fcntl
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = ROOT / "packaging" / "debian"
LOCK = ROOT / "packaging" / "requirements.lock"
UNIT = ROOT / "systemd" / "hookgate.service"

PYTHONS = ("3.11", "3.12", "3.13", "3.14")
ABI3_SUFFIX = ".abi3.so"
# Wheel architecture -> Debian architecture.
ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}
ELF_MACHINES = {"x86_64": 62, "aarch64": 183}  # e_machine: EM_X86_64, EM_AARCH64
# The newest glibc a wheel may need: 2.28 (Debian 10, Ubuntu 18.10, RHEL 8). pip
# matches --platform tags exactly, so every older one is named too.
GLIBC_MINORS = range(28, 4, -1)
LEGACY_MANYLINUX = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
# The first Python the zipapp has no wheels for: the .deb's upper bound.
PYTHON_TOO_NEW = "3.15"

MAINTAINER = "hookgate maintainers <maintainers@users.noreply.r-seed-5c438519.example>"
# The venv install's ExecStart= and its comment, and what the package's unit has instead.
UNIT_EDITS = (
    (
        "# hookgate as a systemd service. Install steps: systemd/README.md.\n",
        "# hookgate as a systemd service, from the Debian package hookgate.\n"
        "# Setting it up: /usr/share/doc/hookgate/README.Debian.\n",
    ),
    (
        "Description=hookgate webhook relay\n",
        "Description=hookgate webhook relay\n"
        "Documentation=man:hookgate(1) file:/usr/share/doc/hookgate/README.Debian\n",
    ),
    (
        "# A symlink to the venv's console script (/opt/hookgate/bin/hookgate); the venv's\n"
        "# interpreter path is baked into that script, so no PATH or activation is needed.\n"
        "ExecStart=/usr/local/bin/hookgate serve -c /etc/hookgate/hookgate.toml\n",
        "# One file, a zipapp run by /usr/bin/python3.\n"
        "ExecStart=/usr/bin/hookgate serve -c /etc/hookgate/hookgate.toml\n"
        "# The zipapp unpacks its libraries (native code cannot load from inside a zip)\n"
        "# once per version, into the one other place the service may write:\n"
        "# /var/cache/hookgate. `systemctl clean --what=cache hookgate` empties it.\n"
        "Environment=SHIV_ROOT=%C/hookgate\n"
        "CacheDirectory=hookgate\n"
        "CacheDirectoryMode=0700\n",
    ),
)

MIT_LICENSE = """\
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all
 copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.
"""


class ReleaseError(Exception):
    """A build step failed; the message says which and why."""


@dataclass(frozen=True)
class Target:
    """One interpreter and architecture the zipapp carries wheels for."""

    arch: str
    python: str

    @property
    def name(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.arch}"

    def pip_args(self) -> list[str]:
        platforms = [f"manylinux_2_{minor}_{self.arch}" for minor in GLIBC_MINORS]
        platforms += [f"{alias}_{self.arch}" for alias in LEGACY_MANYLINUX]
        return [
            "--only-binary=:all:",
            "--implementation=cp",
            f"--python-version={self.python}",
            *(f"--platform={platform}" for platform in platforms),
        ]


TARGETS = tuple(Target(arch, python) for arch in ARCHES for python in PYTHONS)


# -- running tools --------------------------------------------------------------------


def run(args: Sequence[str | Path], **env: str) -> str:
    """Run a command; its output, or a ReleaseError with what it printed."""
    result = subprocess.run(  # noqa: S603 (our own fixed commands)
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )
    if result.returncode != 0:
        command = " ".join(str(arg) for arg in args)
        raise ReleaseError(f"{command} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def pip(*args: str | Path) -> str:
    # The lock pins every file by hash: an ambient constraints file has no say.
    return run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args], PIP_CONSTRAINT=""
    )


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH if set, else the last commit's time."""
    if value := os.environ.get("SOURCE_DATE_EPOCH"):
        return int(value)
    return int(run(["git", "-C", ROOT, "log", "-1", "--format=%ct"]).strip())


def warn_if_uncommitted() -> None:
    if not (ROOT / ".git").exists():
        return  # a copy of the tree (tests build from one): SOURCE_DATE_EPOCH is set
    inputs = ["src", "pyproject.toml", "README.md", "config.example.toml", "packaging", "systemd"]
    changed = run(["git", "-C", ROOT, "status", "--porcelain", "--", *inputs])
    if changed.strip():
        print(
            "release: building from uncommitted changes; a build from the last commit"
            f" would differ:\n{changed}",
            file=sys.stderr,
        )


def project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return dict(tomllib.load(file)["project"])


def check_build_tools() -> None:
    """shiv and setuptools at the versions the ``release`` extra pins: they shape the output."""
    for requirement in project()["optional-dependencies"]["release"]:
        name, version = requirement.split("==")
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "none"
        if installed != version:
            raise ReleaseError(
                f"{name} {installed} is installed, the release extra pins {version}:"
                " pip install -e '.[release]'"
            )


def debian_version(version: str) -> str:
    """PEP 440 pre-releases sort before the release in Debian only with a tilde."""
    return re.sub(r"(?<=\d)\.?(a|b|rc|dev)(?=\d)", r"~\1", version)


# -- wheels ---------------------------------------------------------------------------


def build_hookgate_wheel(work: Path) -> Path:
    """hookgate's own wheel, built from a copy of the tree (the checkout stays clean)."""
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src",
        source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    out = work / "hookgate-wheel"
    # No build isolation: the setuptools pinned in the release extra builds it, the
    # same one every time.
    pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", out, source)
    (wheel,) = out.glob("hookgate-*.whl")
    return wheel


def read_lock() -> dict[str, tuple[str, frozenset[str]]]:
    """``{name: (version, sha256 digests)}`` from the lock."""
    text = LOCK.read_text(encoding="utf-8").replace("\\\n", " ")
    pins = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            requirement, *options = line.split()
            name, version = requirement.split("==")
            pins[name] = (version, frozenset(o.removeprefix("--hash=sha256:") for o in options))
    return pins


def locked_wheels(folder: Path, pins: dict[str, tuple[str, frozenset[str]]]) -> list[Path] | None:
    """The wheels in ``folder`` if they are exactly the lock's, each with a pinned hash."""
    found = {}
    for wheel in folder.glob("*.whl"):
        name, version = wheel_name_version(wheel)
        pinned_version, digests = pins.get(name, ("", frozenset()))
        if version != pinned_version or sha256(wheel) not in digests:
            return None
        found[name] = wheel
    return sorted(found.values()) if found.keys() == pins.keys() else None


def download_locked(cache: Path, target: Target) -> list[Path]:
    """The lock's wheels for one target, from the cache when it holds them.

    pip checks each download against the lock's hashes, and a cached wheel is used
    only if its hash is one of them.
    """
    folder = cache / target.name
    pins = read_lock()
    cache.mkdir(parents=True, exist_ok=True)
    # Two builds at once (two test sessions) share the cache: one fills a folder at a time.
    with (cache / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if wheels := locked_wheels(folder, pins):
            return wheels
        shutil.rmtree(folder, ignore_errors=True)
        pip(
            "download", "--quiet", "--no-deps", "--require-hashes",
            "--requirement", LOCK, "--dest", folder, *target.pip_args(),
        )  # fmt: skip
        wheels = locked_wheels(folder, pins)
    if wheels is None:
        raise ReleaseError(f"pip did not download exactly the locked wheels into {folder}")
    return wheels


def wheel_name_version(wheel: Path) -> tuple[str, str]:
    name, version = wheel.name.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_lock(work: Path) -> None:
    """Resolve hookgate's dependencies for every target; pin the versions and hashes."""
    check_build_tools()
    hookgate = build_hookgate_wheel(work)
    versions: dict[Target, dict[str, str]] = {}
    hashes: dict[str, set[str]] = {}
    for target in TARGETS:
        folder = work / "resolved" / target.name
        pip("download", "--quiet", "--dest", folder, *target.pip_args(), hookgate)
        versions[target] = {}
        for wheel in sorted(folder.glob("*.whl")):
            name, version = wheel_name_version(wheel)
            if name == "hookgate":
                continue
            versions[target][name] = version
            hashes.setdefault(name, set()).add(sha256(wheel))
    first = versions[TARGETS[0]]
    for target, found in versions.items():
        if found != first:
            raise ReleaseError(
                f"{target.name} resolves to other versions than {TARGETS[0].name}:"
                f" {sorted(set(found.items()) ^ set(first.items()))}"
            )
    lines = [
        "# hookgate's dependencies for the zipapp and the .deb, one version for every",
        "# target (CPython " + ", ".join(PYTHONS) + " on " + ", ".join(ARCHES) + "),",
        "# with the hash of each target's wheel. Written by `scripts/release --lock`.",
    ]
    for name, version in sorted(first.items()):
        pins = " \\\n".join(f"    --hash=sha256:{digest}" for digest in sorted(hashes[name]))
        lines.append(f"{name}=={version} \\\n{pins}")
    LOCK.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"release: wrote {LOCK.relative_to(ROOT)} ({len(first)} packages)")


def native_name(name: str, target: Target | None) -> str:
    """``name``, or for an abi3 extension the name of ``target``'s interpreter.

    An abi3 wheel (cryptography's) names its native file alike for every architecture
    (``_rust.abi3.so``), so one zipapp could carry it for one architecture only.
    CPython loads an extension under its own tag too (``.cpython-311-x86_64-linux-gnu.so``),
    so each target gets its copy under that name, as the other wheels name theirs.
    """
    if target is None or not name.endswith(ABI3_SUFFIX):
        return name
    tag = f".cpython-{target.python.replace('.', '')}-{target.arch}-linux-gnu.so"
    return name.removesuffix(ABI3_SUFFIX) + tag


def unpack_wheel(
    wheel: Path, site_packages: Path, seen: dict[str, bytes], target: Target | None = None
) -> None:
    """Install a wheel by unpacking it; ``seen`` holds what earlier wheels put there.

    A file another wheel already wrote must be the same bytes (only the native files
    differ between a package's wheels, and their names differ too), except the
    installer records in ``*.dist-info`` (WHEEL names the tag, RECORD the files):
    the first one stays. ``target``: the interpreter and architecture the wheel was
    downloaded for (None for hookgate's own, pure wheel).
    """
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            parts = info.filename.split("/")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue  # scripts, headers, data: nothing the zipapp runs
                parts = parts[2:]
            name = native_name("/".join(parts), target)
            data = archive.read(info)
            if name in seen:
                if seen[name] != data and ".dist-info/" not in name:
                    raise ReleaseError(f"{wheel.name}: {name} differs from another wheel's")
                continue
            seen[name] = data
            path = site_packages / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(0o755 if (info.external_attr >> 16) & 0o111 else 0o644)


def elf_arch(path: Path) -> str | None:
    """The architecture of an ELF file (from e_machine), None for any other file."""
    with path.open("rb") as file:
        header = file.read(20)
    if header[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(header[18:20], "little")
    for arch, number in ELF_MACHINES.items():
        if machine == number:
            return arch
    raise ReleaseError(f"{path.name}: ELF for machine {machine}, not one of {list(ARCHES)}")


def strip_debug_info(site_packages: Path) -> None:
    """Debug sections out of the native files, as Debian's dh_strip does.

    The wheels ship them unstripped: uvloop's loop module alone is 13 MB with its
    debug info and 2 MB without. The symbol tables stay, so a backtrace still
    names functions. The binutils for each architecture (``.ci/setup``) do it.
    """
    by_arch: dict[str, list[Path]] = {}
    for path in sorted(site_packages.rglob("*.so*")):
        if path.is_file() and (arch := elf_arch(path)):
            by_arch.setdefault(arch, []).append(path)
    for arch, paths in sorted(by_arch.items()):
        tool = f"{arch}-linux-gnu-strip"
        if shutil.which(tool) is None:
            package = f"binutils-{arch.replace('_', '-')}-linux-gnu"
            raise ReleaseError(f"{tool} is missing: apt-get install {package} (.ci/setup)")
        run([tool, "--strip-debug", *paths])


def site_packages_for(folder: Path, wheels: Iterable[tuple[Path, Target | None]]) -> Path:
    seen: dict[str, bytes] = {}
    for wheel, target in wheels:
        unpack_wheel(wheel, folder, seen, target)
    strip_debug_info(folder)
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    return folder


def build_zipapp(site_packages: Path, output: Path, interpreter: str, epoch: int) -> None:
    run(
        [
            sys.executable, "-m", "shiv",
            "--site-packages", site_packages,
            "--entry-point", "hookgate.cli:main",
            "--python", interpreter,
            "--reproducible",
            "--output-file", output,
        ],
        SOURCE_DATE_EPOCH=str(epoch),
    )  # fmt: skip
    output.chmod(0o755)


# -- the Debian package ---------------------------------------------------------------


def packaged_unit() -> str:
    """systemd/hookgate.service with ExecStart= at /usr/bin/hookgate and its cache."""
    text = UNIT.read_text(encoding="utf-8")
    for old, new in UNIT_EDITS:
        if text.count(old) != 1:
            raise ReleaseError(
                f"{UNIT.relative_to(ROOT)} no longer contains, once, the lines\n{old}"
                "update UNIT_EDITS in scripts/release.py"
            )
        text = text.replace(old, new)
    return text


def gzip_bytes(data: bytes) -> bytes:
    """gzip -9n: no name, no time stamp."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def distribution_licenses(site_packages: Path) -> list[str]:
    """One line per library inside the zipapp: name, version, license."""
    lines = []
    for path in sorted(site_packages.glob("*.dist-info/METADATA")):
        message = email.parser.Parser().parsestr(path.read_text(encoding="utf-8"))
        if message["Name"] == "hookgate":
            continue
        license_ = message.get("License-Expression") or message.get("License") or ""
        if not license_ or "\n" in license_ or len(license_) > 40:
            classifiers = message.get_all("Classifier") or []
            license_ = " / ".join(
                c.split("::")[-1].strip() for c in classifiers if c.startswith("License ::")
            )
        lines.append(f"  {message['Name']:<20} {message['Version']:<10} {license_}")
    return lines


def copyright_file(site_packages: Path, epoch: int) -> str:
    bundled = "\n".join(distribution_licenses(site_packages))
    year = time.gmtime(epoch).tm_year
    return (
        "hookgate: a durable webhook relay.\n\n"
        f"Copyright {year} hookgate contributors\n"
        "License: MIT\n"
        f"{MIT_LICENSE}\n"
        "/usr/bin/hookgate also holds these libraries, each under its own license; the\n"
        "full texts are inside it, in site-packages/<name>-<version>.dist-info/\n"
        "(`unzip -l /usr/bin/hookgate | grep -i licen`). Apache-2.0, BSD-3-Clause,\n"
        "MPL-2.0 and the PSF license are also in /usr/share/common-licenses.\n\n"
        f"{bundled}\n"
    )


def changelog(version: str, epoch: int) -> str:
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(epoch))
    return (
        f"hookgate ({version}) unstable; urgency=medium\n\n"
        f"  * hookgate {version}: see /usr/share/doc/hookgate/README.md.gz.\n\n"
        f" -- {MAINTAINER}  {date}\n"
    )


def control_file(version: str, deb_arch: str, installed_kib: int) -> str:
    return (
        "Package: hookgate\n"
        f"Version: {version}\n"
        f"Architecture: {deb_arch}\n"
        f"Maintainer: {MAINTAINER}\n"
        f"Installed-Size: {installed_kib}\n"
        f"Depends: python3 (>= 3.11), python3 (<< {PYTHON_TOO_NEW}), systemd\n"
        "Section: net\n"
        "Priority: optional\n"
        "Description: durable webhook relay: verify, persist, forward with retries\n"
        " hookgate receives webhooks from providers (payment systems, GitHub, shops,\n"
        " CRMs), checks that each one is genuine, stores it durably in SQLite, answers\n"
        " the provider at once, and forwards it to internal services, retrying while\n"
        " they are down. A 2xx to the provider means the webhook is on disk.\n"
        " .\n"
        " The service is not started until /etc/hookgate/hookgate.toml has been\n"
        " written and the service enabled (README.Debian). Removing the package keeps\n"
        " the database; purging it deletes the database.\n"
    )


def write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def stage_package(tree: Path, zipapp: Path, site_packages: Path, version: str, epoch: int) -> None:
    """Everything but DEBIAN/control and md5sums."""
    write(tree / "usr/bin/hookgate", zipapp.read_bytes(), 0o755)
    write(tree / "lib/systemd/system/hookgate.service", packaged_unit())
    write(tree / "etc/hookgate/hookgate.toml", (DEBIAN / "hookgate.toml").read_bytes())
    doc = tree / "usr/share/doc/hookgate"
    write(doc / "copyright", copyright_file(site_packages, epoch))
    write(doc / "changelog.gz", gzip_bytes(changelog(version, epoch).encode()))
    write(doc / "README.Debian", (DEBIAN / "README.Debian").read_bytes())
    write(doc / "README.md.gz", gzip_bytes((ROOT / "README.md").read_bytes()))
    example = (ROOT / "config.example.toml").read_bytes()
    write(doc / "examples/config.example.toml", example)
    manual = gzip_bytes((DEBIAN / "hookgate.1").read_bytes())
    write(tree / "usr/share/man/man1/hookgate.1.gz", manual)
    overrides = DEBIAN / "lintian-overrides"
    if overrides.exists():
        write(tree / "usr/share/lintian/overrides/hookgate", overrides.read_bytes())
    for script in ("postinst", "prerm", "postrm"):
        write(tree / "DEBIAN" / script, (DEBIAN / script).read_bytes(), 0o755)
    write(tree / "DEBIAN/conffiles", "/etc/hookgate/hookgate.toml\n")


def finish_package(tree: Path, version: str, deb_arch: str, epoch: int) -> None:
    """md5sums, Installed-Size and control; directory modes and every time stamp fixed."""
    conffiles = set((tree / "DEBIAN/conffiles").read_text(encoding="utf-8").split())
    files = sorted(p for p in tree.rglob("*") if p.is_file() and "DEBIAN" not in p.parts)
    sums = [
        f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.relative_to(tree)}"  # noqa: S324 (dpkg's format)
        for p in files
        if f"/{p.relative_to(tree)}" not in conffiles
    ]
    write(tree / "DEBIAN/md5sums", "\n".join(sums) + "\n")
    directories = [p for p in tree.rglob("*") if p.is_dir() and "DEBIAN" not in p.parts]
    installed_kib = sum((p.stat().st_size + 1023) // 1024 for p in files) + len(directories)
    write(tree / "DEBIAN/control", control_file(version, deb_arch, installed_kib))
    for path in [tree, *tree.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
        os.utime(path, (epoch, epoch))


def build_deb(tree: Path, output: Path, epoch: int) -> None:
    run(
        # gzip: the zipapp, nearly all of the package, is compressed already (xz would
        # gain 2% and take ten times as long).
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", tree, output],
        SOURCE_DATE_EPOCH=str(epoch),
    )


# -- the build ------------------------------------------------------------------------


def build(out: Path, work: Path, cache: Path) -> list[Path]:
    epoch = source_date_epoch()
    check_build_tools()
    version = str(project()["version"])
    deb_version = debian_version(version)
    warn_if_uncommitted()
    hookgate = build_hookgate_wheel(work)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        downloads = pool.map(lambda target: download_locked(cache, target), TARGETS)
        wheels = dict(zip(TARGETS, downloads, strict=True))
    out.mkdir(parents=True, exist_ok=True)

    every = [(hookgate, None), *((w, target) for target in TARGETS for w in wheels[target])]
    fat = site_packages_for(work / "site-packages" / "all", every)
    zipapp = out / "hookgate"
    build_zipapp(fat, zipapp, "/usr/bin/env python3", epoch)
    artefacts = [zipapp]

    for arch, deb_arch in ARCHES.items():
        own = [(hookgate, None), *((w, t) for t in TARGETS if t.arch == arch for w in wheels[t])]
        site_packages = site_packages_for(work / "site-packages" / arch, own)
        arch_zipapp = work / f"hookgate-{arch}"
        build_zipapp(site_packages, arch_zipapp, "/usr/bin/python3", epoch)
        tree = work / "deb" / deb_arch
        stage_package(tree, arch_zipapp, site_packages, deb_version, epoch)
        finish_package(tree, deb_version, deb_arch, epoch)
        deb = out / f"hookgate_{deb_version}_{deb_arch}.deb"
        build_deb(tree, deb, epoch)
        artefacts.append(deb)

    sums = "".join(f"{sha256(path)}  {path.name}\n" for path in artefacts)
    (out / "SHA256SUMS").write_text(sums, encoding="utf-8")
    return artefacts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/release", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="default: dist/")
    parser.add_argument(
        "--wheel-cache",
        type=Path,
        default=ROOT / "build" / "release-wheels",
        help="where downloaded wheels are kept between builds (default: build/release-wheels/)",
    )
    parser.add_argument(
        "--lock", action="store_true", help="resolve again and rewrite packaging/requirements.lock"
    )
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="hookgate-release-") as work:
            if args.lock:
                write_lock(Path(work))
                return 0
            for path in build(args.out.resolve(), Path(work), args.wheel_cache.resolve()):
                print(f"{sha256(path)}  {path}  ({path.stat().st_size / 1e6:.1f} MB)")
    except ReleaseError as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
