"""The resolved config as shown by check-config: secrets masked."""

from __future__ import annotations

from pathlib import Path

from hookgate import config

from .samples import (
    MINIMAL_SOURCE,
    SAMPLE,
    SAMPLE_ENV,
    load,
)

# -- redaction ---------------------------------------------------------------------------


def test_redacted_masks_secrets(tmp_path: Path) -> None:
    cfg = load(tmp_path, SAMPLE, SAMPLE_ENV)
    data = config.redacted(cfg)
    flat = repr(data)
    for value in SAMPLE_ENV.values():
        assert value not in flat
    assert data["admin"]["token"] == "***"
    assert data["sources"]["stripe"]["verify"]["secrets"] == ["***"]
    assert data["sources"]["custom"]["verify"]["secrets"] == ["***"]
    assert data["destinations"]["orders"]["secret"] == "***"
    # Everything else is shown as is.
    assert data["destinations"]["orders"]["url"] == "http://127.0.0.1:5000/webhooks/stripe"
    assert data["server"]["max_body"] == 1024**2
    assert data["delivery"]["timeout"] == 10.0
    assert data["destinations"]["orders"]["policy"]["max_attempts"] == 12


def test_redacted_leaves_unset_secrets_none(tmp_path: Path) -> None:
    cfg = load(tmp_path, MINIMAL_SOURCE + '[destinations.d]\nurl = "http://h/"\nsources = ["x"]\n')
    data = config.redacted(cfg)
    assert data["admin"]["token"] is None
    assert data["destinations"]["d"]["secret"] is None
    assert data["sources"]["x"]["verify"]["secrets"] == []


def test_redacted_masks_fixed_headers_and_url_passwords(tmp_path: Path) -> None:
    path = tmp_path / "hookgate.toml"
    path.write_text(
        '[sources.a]\npath = "/a"\n'
        '[destinations.d]\nurl = "https://user:pa55@example.com/x"\nsources = ["a"]\n'
        'headers = { "Authorization" = "Bearer xyz" }\n'
    )
    shown = config.redacted(config.load(path, {}))
    destination = shown["destinations"]["d"]
    assert destination["url"] == "https://user:***@example.com/x"
    assert destination["headers"] == {"Authorization": "***"}
    assert "pa55" not in str(shown) and "xyz" not in str(shown)
