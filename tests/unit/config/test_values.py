"""Durations, sizes and listen addresses: the values written with units."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookgate import config

from .samples import (
    MINIMAL_SOURCE,
    errors_of,
    line_of,
    load,
)

# -- durations and sizes --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("0ms", 0.0),
        ("1.5s", 1.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        (" 3 s ", 3.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    value = config.parse_duration(text)
    assert isinstance(value, config.Duration)
    assert value == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10", "", "s", "-1s", "1.s", "10 sec", "5M", "1w", 10, 1.5, None])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        config.parse_duration(bad)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("512KiB", 512 * 1024),
        ("1MiB", 1024**2),
        ("2GiB", 2 * 1024**3),
        ("1mib", 1024**2),
        ("10kb", 10_000),
        ("3MB", 3_000_000),
        ("100", 100),
        ("100B", 100),
        (4096, 4096),
        (0, 0),
    ],
)
def test_parse_size(value: object, size: int) -> None:
    parsed = config.parse_size(value)
    assert isinstance(parsed, config.Size)
    assert parsed == size


@pytest.mark.parametrize("bad", ["1.5MiB", "1TiB", "-1", "MiB", "", -1, True, 1.0, None])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        config.parse_size(bad)


def test_durations_and_sizes_in_a_file(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [server]
        max_body = "512KiB"
        request_timeout = "250ms"
        [storage]
        retention = "2h"
        """
        + MINIMAL_SOURCE
        + """
        dedup_window = "5m"
        """,
    )
    assert cfg.server.max_body == 512 * 1024
    assert cfg.server.request_timeout == pytest.approx(0.25)
    assert cfg.storage.retention == 7200
    assert cfg.sources["x"].dedup_window == 300


def test_plain_integer_size_in_a_file(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[server]\nmax_body = 2048\n")
    assert cfg.server.max_body == 2048


def test_bad_duration_names_key_and_line(tmp_path: Path) -> None:
    text = """
    [delivery]
    timeout = "10"
    """
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith("delivery.timeout: expected a duration")
    assert errors[0].endswith(f"(line {line_of(text, 'timeout')})")


# -- listen addresses ------------------------------------------------------------------


@pytest.mark.parametrize(
    "listen", ["8080", "localhost", "127.0.0.1:", "127.0.0.1:65536", "::1:8080", "[::1]8080"]
)
def test_bad_listen(tmp_path: Path, listen: str) -> None:
    errors = errors_of(tmp_path, f'[server]\nlisten = "{listen}"\n')
    assert errors == [
        f'server.listen: expected "host:port" or "[::]:port", got {listen!r} (line 2)'
    ]


@pytest.mark.parametrize(
    ("listen", "parsed"),
    [
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("[::]:8080", ("::", 8080)),
        ("[::1]:65535", ("::1", 65535)),
        ("localhost:9000", ("localhost", 9000)),
        (":8080", ("0.0.0.0", 8080)),
    ],
)
def test_good_listen(tmp_path: Path, listen: str, parsed: tuple[str, int]) -> None:
    cfg = load(tmp_path, f'[server]\nlisten = "{listen}"\n')
    assert config.parse_listen(cfg.server.listen) == parsed
