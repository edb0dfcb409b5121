"""``provider = NAME`` on a source: the provider's scheme, recommended allow_ips and
tolerance as defaults that explicit keys override; ``public_url``; the public-key and
handshake keys of ``[verify]``."""

from __future__ import annotations

from pathlib import Path

from hookgate import providers

from .samples import errors_of, line_of, load


def test_provider_sets_the_scheme_and_its_recommended_defaults(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [sources.paddle]
        path = "/hooks/paddle"
        provider = "paddle"
        [sources.paddle.verify]
        secrets = ["pdl_ntfset_x"]

        [sources.linear]
        path = "/hooks/linear"
        provider = "linear"
        [sources.linear.verify]
        secrets = ["lin_wh_x"]
        """,
    )
    paddle, linear = cfg.sources["paddle"], cfg.sources["linear"]
    assert paddle.verify.scheme == "paddle"
    assert paddle.allow_ips == list(providers.get("paddle").ip_ranges)
    assert paddle.verify.tolerance == 300  # Paddle recommends no window: hookgate's default
    assert linear.verify.scheme == "linear"
    assert linear.verify.tolerance == 60  # Linear's recommended window
    assert linear.allow_ips == []  # Linear publishes no ranges


def test_explicit_keys_override_the_providers_defaults(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [sources.paddle]
        path = "/hooks/paddle"
        provider = "paddle"
        allow_ips = []
        [sources.paddle.verify]
        scheme = "paddle"
        secrets = ["pdl_ntfset_x"]

        [sources.linear]
        path = "/hooks/linear"
        provider = "linear"
        [sources.linear.verify]
        secrets = ["lin_wh_x"]
        tolerance = "2m"
        """,
    )
    assert cfg.sources["paddle"].allow_ips == []
    assert cfg.sources["linear"].verify.tolerance == 120


def test_a_scheme_keeps_working_as_before_without_provider_defaults(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [sources.paddle]
        path = "/hooks/paddle"
        [sources.paddle.verify]
        scheme = "paddle"
        secrets = ["pdl_ntfset_x"]
        """,
    )
    assert cfg.sources["paddle"].allow_ips == []
    assert cfg.sources["paddle"].provider is None


def test_a_scheme_that_contradicts_the_provider_is_an_error(tmp_path: Path) -> None:
    text = """
    [sources.x]
    path = "/hooks/x"
    provider = "github"
    [sources.x.verify]
    scheme = "stripe"
    secrets = ["s"]
    """
    assert errors_of(tmp_path, text) == [
        'sources.x.verify.scheme: "stripe" contradicts provider = "github" (drop one of them)'
        f" (line {line_of(text, 'scheme')})"
    ]


def test_an_unknown_provider_names_the_key_and_the_choices(tmp_path: Path) -> None:
    text = """
    [sources.x]
    path = "/hooks/x"
    provider = "githib"
    """
    (error,) = errors_of(tmp_path, text)
    assert error.startswith('sources.x.provider: unknown provider "githib" (expected one of: none,')
    assert "twilio" in error and error.endswith(f"(line {line_of(text, 'githib')})")


def test_a_provider_without_its_secret_names_the_key(tmp_path: Path) -> None:
    text = """
    [sources.x]
    path = "/hooks/x"
    provider = "twilio"
    """
    assert errors_of(tmp_path, text) == [
        'sources.x.verify.secrets: scheme "twilio" needs at least one secret'
    ]


def test_a_key_pair_provider_names_its_bad_public_key(tmp_path: Path) -> None:
    text = """
    [sources.x]
    path = "/hooks/x"
    provider = "discord"
    [sources.x.verify]
    public_keys = ["not-a-key"]
    """
    (error,) = errors_of(tmp_path, text)
    assert error.startswith("sources.x.verify: public_keys[0]: expected an Ed25519 public key")


def test_public_url_must_be_an_absolute_http_url(tmp_path: Path) -> None:
    for url, expected in (
        ("hooks.example.com/sms", "expected an absolute http(s) URL"),
        ("https://hooks.example.com/sms?x=1", "expected a URL without query or fragment"),
    ):
        text = f"""
        [sources.x]
        path = "/hooks/x"
        public_url = "{url}"
        """
        (error,) = errors_of(tmp_path, text)
        assert error.startswith(f"sources.x.public_url: {expected}")


def test_an_enrolled_asana_secret_is_read_as_a_secret(tmp_path: Path) -> None:
    text = """
    [sources.asana]
    path = "/hooks/asana"
    provider = "asana"
    [sources.asana.verify]
    handshake_secret_file = "asana.secret"
    """
    before = load(tmp_path, text).sources["asana"].verify
    assert before.secrets == []
    assert before.handshake_secret_file == str(tmp_path / "asana.secret")
    (tmp_path / "asana.secret").write_text("enrolled\n")
    assert load(tmp_path, text).sources["asana"].verify.secrets == ["enrolled"]


def test_asana_needs_a_secret_or_a_file_to_enroll_one(tmp_path: Path) -> None:
    text = """
    [sources.asana]
    path = "/hooks/asana"
    provider = "asana"
    """
    assert errors_of(tmp_path, text) == [
        'sources.asana.verify: scheme "asana" needs at least one secret, or'
        f" handshake_secret_file to record it (line {line_of(text, '[sources.asana]')})"
    ]


def test_a_private_key_in_public_keys_is_refused(tmp_path: Path) -> None:
    text = """
    [sources.x]
    path = "/hooks/x"
    provider = "discord"
    [sources.x.verify]
    public_keys = ["-----BEGIN PRIVATE KEY-----\\nMC4CAQAwBQYDK2VwBCIEIA==\\n-----END"]
    """
    (error,) = errors_of(tmp_path, text)
    assert error.startswith(
        "sources.x.verify.public_keys[0]: expected a public key, got a private key"
    )
    assert "MC4CAQ" not in error
