"""The .deb: its fields, files and scripts, installed and removed in a throwaway root.

``dpkg --root=R --force-script-chrootless`` installs into R without chroot and runs
the maintainer scripts on this machine with DPKG_ROOT=R; the scripts put every path
they touch under $DPKG_ROOT and leave the running system's systemd alone when it is
set. So remove and purge run the real postrm against R's /var/lib/hookgate. With
--force-not-root this works unprivileged too.

What they do with a running systemd (never enable or start, restart only what was
running, stop on remove) is checked by running them with systemctl and
deb-systemd-invoke replaced by recorders.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("postinst", "prerm", "postrm")
CONFIG = "/etc/hookgate/hookgate.toml"


def dpkg_deb(*args: str) -> str:
    return subprocess.run(
        ["dpkg-deb", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def host_arch() -> str:
    """The package to install: this machine's architecture, or amd64 for the file checks."""
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return arch if arch in ("amd64", "arm64") else "amd64"


@pytest.fixture
def deb(release) -> Path:
    return Path(release.deb(host_arch()))


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run .ci/setup (Debian package {package})")
    return path


# -- the file -------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_control_fields(release, arch: str) -> None:
    deb = release.deb(arch)
    fields = dict(
        line.split(": ", 1)
        for line in dpkg_deb("--field", str(deb), "Package", "Version", "Architecture", "Depends")
        .strip()
        .splitlines()
    )
    assert fields["Package"] == "hookgate"
    assert fields["Version"] == release.deb_version
    assert fields["Architecture"] == arch
    depends = [d.strip() for d in fields["Depends"].split(",")]
    assert "python3 (>= 3.11)" in depends
    assert "systemd" in depends
    # The zipapp has no wheels for a Python newer than the release script targets.
    assert any(re.fullmatch(r"python3 \(<< 3\.\d+\)", d) for d in depends), depends


def test_contents(deb: Path) -> None:
    listing = {}
    for line in dpkg_deb("--contents", str(deb)).splitlines():
        mode, owner, _size, _date, _time, path = line.split(maxsplit=5)
        listing[path.removeprefix(".")] = (mode, owner)
    assert listing["/usr/bin/hookgate"] == ("-rwxr-xr-x", "root/root")
    assert listing["/lib/systemd/system/hookgate.service"] == ("-rw-r--r--", "root/root")
    assert listing[CONFIG] == ("-rw-r--r--", "root/root")
    for doc in ("copyright", "changelog.gz", "README.Debian", "examples/config.example.toml"):
        assert f"/usr/share/doc/hookgate/{doc}" in listing
    assert "/usr/share/man/man1/hookgate.1.gz" in listing
    # The database and the cache are made by systemd at the first start, not shipped.
    assert not [path for path in listing if path.startswith("/var/")]
    assert {owner for _mode, owner in listing.values()} == {"root/root"}


def test_conffile_and_maintainer_scripts(deb: Path, tmp_path: Path) -> None:
    control = tmp_path / "DEBIAN"
    subprocess.run(["dpkg-deb", "--control", str(deb), str(control)], check=True)
    assert (control / "conffiles").read_text(encoding="utf-8") == f"{CONFIG}\n"
    for name in SCRIPTS:
        script = control / name
        assert script.stat().st_mode & stat.S_IXUSR, f"{name} is not executable"
        assert script.read_bytes() == (ROOT / "packaging" / "debian" / name).read_bytes()
        subprocess.run(["sh", "-n", str(script)], check=True)  # parses as POSIX sh
    assert not (control / "preinst").exists()


def test_lintian_finds_no_error_or_warning(release) -> None:
    lintian = require("lintian", "lintian")
    for arch in ("amd64", "arm64"):
        result = subprocess.run(
            [lintian, "--display-info", str(release.deb(arch))],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        tags = [line for line in result.stdout.splitlines() if re.match(r"[A-Z]: ", line)]
        serious = [tag for tag in tags if tag.startswith(("E:", "W:"))]
        assert not serious, "\n".join(tags) + result.stderr


# -- installed into a throwaway root --------------------------------------------------


def dpkg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "dpkg",
            f"--root={root}",
            f"--log={root / 'dpkg.log'}",
            "--force-script-chrootless",
            "--force-not-root",
            # python3 and systemd are not in the throwaway root's package database.
            "--force-depends",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def package_status(root: Path) -> str:
    text = (root / "var/lib/dpkg/status").read_text(encoding="utf-8")
    match = re.search(r"^Package: hookgate\nStatus: (.+)$", text, re.MULTILINE)
    return match[1] if match else "not-installed"


@pytest.fixture
def installed(deb: Path, tmp_path: Path) -> Path:
    """A root with an empty dpkg database, and the package installed into it."""
    root = tmp_path / "root"
    admin = root / "var/lib/dpkg"
    for folder in ("info", "updates", "triggers"):
        (admin / folder).mkdir(parents=True)
    (admin / "status").touch()
    result = dpkg(root, "--install", str(deb))
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def simulate_service_history(root: Path) -> None:
    """What systemd and the operator leave behind once the service has run."""
    data = root / "var/lib/private/hookgate"
    data.mkdir(parents=True)
    (data / "hookgate.db").write_bytes(b"SQLite format 3\0")
    (root / "var/lib/hookgate").symlink_to("private/hookgate")
    cache = root / "var/cache/private/hookgate/hookgate_0123abcd/site-packages"
    cache.mkdir(parents=True)
    (root / "var/cache/hookgate").symlink_to("private/hookgate")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "hookgate.service").symlink_to("/lib/systemd/system/hookgate.service")
    credentials = root / "etc/hookgate/credentials"
    credentials.mkdir()
    (credentials / "shop.key").write_text("whsec_c2VjcmV0\n", encoding="utf-8")
    config = root / CONFIG.lstrip("/")
    config.write_text(config.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")


def test_installs_and_the_installed_program_runs(
    installed: Path, release, system_python: str, bare_env: dict[str, str]
) -> None:
    assert package_status(installed) == "install ok installed"
    status = (installed / "var/lib/dpkg/status").read_text(encoding="utf-8")
    assert f"Conffiles:\n {CONFIG} " in status
    program = installed / "usr/bin/hookgate"
    result = subprocess.run(
        [str(program), "--version"], env=bare_env, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (0, f"hookgate {release.version}\n"), result.stderr
    # Installing started nothing and made no state: that waits for systemd and a config.
    assert not (installed / "var/lib/hookgate").exists()
    assert not (installed / "etc/systemd/system").exists()


def test_packaged_config_is_valid_and_so_is_its_commented_example(
    installed: Path, bare_env: dict[str, str], tmp_path: Path
) -> None:
    program = str(installed / "usr/bin/hookgate")
    config = installed / CONFIG.lstrip("/")

    def check(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [program, "check-config", "--no-storage-check", "-c", str(path)],
            env={**bare_env, **env},
            capture_output=True,
            text=True,
            check=False,
        )

    shipped = check(config)
    assert shipped.returncode == 0, shipped.stderr
    assert '"path": "/var/lib/hookgate/hookgate.db"' in shipped.stdout
    # Uncommenting the example source and destination gives a working config too.
    example = re.sub(r"(?m)^# (?=\[|[a-z_]+ = )", "", config.read_text(encoding="utf-8"))
    assert "[sources.shop]" in example.splitlines()
    (tmp_path / "example.toml").write_text(example, encoding="utf-8")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for key in ("shop.key", "orders.key"):
        (credentials / key).write_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLc4v\n", encoding="utf-8")
    uncommented = check(tmp_path / "example.toml", CREDENTIALS_DIRECTORY=str(credentials))
    assert uncommented.returncode == 0, uncommented.stderr


def test_remove_keeps_the_database_and_purge_deletes_it(installed: Path) -> None:
    simulate_service_history(installed)

    removed = dpkg(installed, "--remove", "hookgate")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert package_status(installed) == "deinstall ok config-files"
    assert not (installed / "usr/bin/hookgate").exists()
    assert not (installed / "lib/systemd/system/hookgate.service").exists()
    assert (installed / "var/lib/hookgate/hookgate.db").read_bytes() == b"SQLite format 3\0"
    assert (installed / CONFIG.lstrip("/")).read_text(encoding="utf-8").endswith("# edited\n")
    # The unpacked code of the removed version is a cache: gone.
    assert not (installed / "var/cache/private/hookgate").exists()
    assert not (installed / "var/cache/hookgate").is_symlink()

    purged = dpkg(installed, "--purge", "hookgate")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert package_status(installed) == "not-installed"
    assert not (installed / "var/lib/private/hookgate").exists()
    assert not (installed / "var/lib/hookgate").is_symlink()
    assert not (installed / CONFIG.lstrip("/")).exists()
    assert not (
        installed / "etc/systemd/system/multi-user.target.wants/hookgate.service"
    ).is_symlink()
    # The operator's secrets are the operator's to delete.
    assert (installed / "etc/hookgate/credentials/shop.key").exists()


# -- the installed unit ---------------------------------------------------------------


def unit_directives(text: str) -> list[tuple[str, str]]:
    return [
        (key.strip(), value.strip())
        for line in text.splitlines()
        if line and not line.startswith(("#", "[")) and "=" in line
        for key, value in [line.split("=", 1)]
    ]


def test_installed_unit_runs_the_installed_program(installed: Path) -> None:
    unit = (installed / "lib/systemd/system/hookgate.service").read_text(encoding="utf-8")
    directives = unit_directives(unit)
    assert ("ExecStart", "/usr/bin/hookgate serve -c /etc/hookgate/hookgate.toml") in directives
    assert "/usr/local/bin" not in unit and "/opt/hookgate" not in unit
    # The zipapp unpacks into the service's cache directory, its one writable place
    # besides the database (ProtectSystem=strict, and DynamicUser= has no home).
    assert ("Environment", "SHIV_ROOT=%C/hookgate") in directives
    assert ("CacheDirectory", "hookgate") in directives
    # Everything else is systemd/hookgate.service as the venv install uses it.
    source = unit_directives((ROOT / "systemd/hookgate.service").read_text(encoding="utf-8"))
    changed = {"ExecStart", "Environment", "CacheDirectory", "CacheDirectoryMode", "Documentation"}
    assert [d for d in directives if d[0] not in changed] == [
        d for d in source if d[0] not in changed
    ]


def test_installed_unit_verifies(installed: Path, tmp_path: Path) -> None:
    """systemd-analyze verify checks the unit, and that its ExecStart= program exists.

    It resolves /usr/bin/hookgate on this machine, so a copy of the unit names the
    throwaway root's copy instead (the line itself is checked above).
    """
    analyze = require("systemd-analyze", "systemd")
    unit = (installed / "lib/systemd/system/hookgate.service").read_text(encoding="utf-8")
    exec_start = "ExecStart=/usr/bin/hookgate "
    assert unit.count(exec_start) == 1
    copy = tmp_path / "unit" / "hookgate.service"
    copy.parent.mkdir()
    copy.write_text(
        unit.replace(exec_start, f"ExecStart={installed}/usr/bin/hookgate "), encoding="utf-8"
    )
    verify = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert security.returncode == 0, f"exposure above 2.0:\n{security.stdout}{security.stderr}"


# -- the scripts with a running systemd -----------------------------------------------


@pytest.fixture
def fake_systemd(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Recording systemctl and deb-systemd-invoke, and a stand-in for /run/systemd/system."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    calls.touch()
    for tool in ("systemctl", "deb-systemd-invoke"):
        path = bin_dir / tool
        path.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n', encoding="utf-8")
        path.chmod(0o755)
    running = tmp_path / "run-systemd-system"
    running.mkdir()
    return bin_dir, calls, running


def run_script(
    name: str, args: list[str], fake: tuple[Path, Path, Path], tmp_path: Path, dpkg_root: str = ""
) -> list[str]:
    """The script as packaged, with /run/systemd/system pointing at a folder of ours."""
    bin_dir, calls, running = fake
    text = (ROOT / "packaging" / "debian" / name).read_text(encoding="utf-8")
    assert text.count("/run/systemd/system") == 1, "update this test: how the script asks"
    script = tmp_path / name
    script.write_text(text.replace("/run/systemd/system", str(running)), encoding="utf-8")
    calls.write_text("", encoding="utf-8")
    subprocess.run(
        ["sh", str(script), *args],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "DPKG_ROOT": dpkg_root},
        check=True,
        timeout=30,
    )
    return calls.read_text(encoding="utf-8").splitlines()


RELOAD = "systemctl --system daemon-reload"
TRY_RESTART = "deb-systemd-invoke try-restart hookgate.service"


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        # A first install: systemd learns of the unit; nothing is enabled or started.
        ("postinst", ["configure", ""], [RELOAD]),
        # An upgrade restarts the service only if it is running.
        ("postinst", ["configure", "0.0.9"], [RELOAD, TRY_RESTART]),
        ("prerm", ["remove"], ["deb-systemd-invoke stop hookgate.service"]),
        ("prerm", ["upgrade", "0.2.0"], []),
        ("postrm", ["remove"], [RELOAD]),
        ("postrm", ["purge"], [RELOAD]),
        ("postrm", ["upgrade", "0.2.0"], []),
    ],
)  # fmt: skip
def test_scripts_with_systemd_running(
    script: str,
    args: list[str],
    expected: list[str],
    fake_systemd: tuple[Path, Path, Path],
    tmp_path: Path,
) -> None:
    calls = run_script(script, args, fake_systemd, tmp_path, dpkg_root="")
    assert calls == expected


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_leave_systemd_alone_for_another_root_or_without_systemd(
    script: str, fake_systemd: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    args = {"postinst": ["configure", "0.0.9"], "prerm": ["remove"], "postrm": ["purge"]}[script]
    other_root = tmp_path / "other-root"
    other_root.mkdir()
    assert run_script(script, args, fake_systemd, tmp_path, dpkg_root=str(other_root)) == []
    _bin_dir, _calls, running = fake_systemd
    running.rmdir()  # systemd is not running (a container, a chroot)
    assert run_script(script, args, fake_systemd, tmp_path) == []
