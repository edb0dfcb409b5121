"""The loader: ${ENV}, secret files, [delivery] inheritance, paths, the documented
sample and the storage check, through real TOML files and ``config.load``."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from hookgate import config
from hookgate.errors import ConfigError

from .samples import (
    MINIMAL_SOURCE,
    SAMPLE,
    SAMPLE_ENV,
    STANDARD_SECRET,
    errors_of,
    line_of,
    load,
    write,
)

# -- ${ENV} substitution ---------------------------------------------------------------


def test_env_substitution(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [admin]
        token = "Bearer-${TOKEN}-${SUFFIX}"
        [server]
        listen = "${HOST}:${PORT}"
        """,
        {"TOKEN": "abc", "SUFFIX": "z", "HOST": "127.0.0.1", "PORT": "8081"},
    )
    assert cfg.admin.token == "Bearer-abc-z"
    assert cfg.server.listen == "127.0.0.1:8081"


def test_env_substitution_in_lists(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [sources.x]
        path = "/hooks/x"
        [sources.x.verify]
        scheme = "github"
        secrets = ["${OLD}", "${NEW}"]
        """,
        {"OLD": "old-secret", "NEW": "new-secret"},
    )
    assert cfg.sources["x"].verify.secrets == ["old-secret", "new-secret"]


def test_env_defaults_to_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKGATE_TEST_TOKEN", "from-os-environ")
    path = write(tmp_path, '[admin]\ntoken = "${HOOKGATE_TEST_TOKEN}"\n')
    assert config.load(path).admin.token == "from-os-environ"


def test_unset_env_variable_names_variable_and_key(tmp_path: Path) -> None:
    text = """
    [sources.x]
    path = "/hooks/x"
    [sources.x.verify]
    scheme = "github"
    secrets = ["${SET_ONE}", "${MISSING_ONE}"]
    """
    errors = errors_of(tmp_path, text, {"SET_ONE": "s"})
    assert errors == [
        "sources.x.verify.secrets[1]: environment variable MISSING_ONE is not set"
        f" (line {line_of(text, 'secrets')})"
    ]


def test_unset_env_variable_in_top_table(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, '[admin]\ntoken = "${NOPE}"\n')
    assert errors == ["admin.token: environment variable NOPE is not set (line 2)"]


# -- secret_file ---------------------------------------------------------------------


def test_secret_file_relative_to_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "github.key").write_text("gh-secret\n")
    (tmp_path / "orders.key").write_text(STANDARD_SECRET + "\n")
    cfg = load(
        tmp_path,
        """
        [sources.x]
        path = "/hooks/x"
        [sources.x.verify]
        scheme = "github"
        secrets = ["inline-secret"]
        secret_file = "keys/github.key"
        [destinations.d]
        url = "http://127.0.0.1:1/"
        sources = ["x"]
        sign = "standard"
        secret_file = "orders.key"
        """,
    )
    verify = cfg.sources["x"].verify
    assert verify.secrets == ["inline-secret", "gh-secret"]
    assert verify.secret_file is None
    assert cfg.destinations["d"].secret == STANDARD_SECRET


def test_secret_file_relative_to_config_folder_not_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "gh.key").write_text("from-config-folder\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (elsewhere / "gh.key").write_text("from-cwd\n")
    monkeypatch.chdir(elsewhere)
    path = write(
        conf_dir,
        '[sources.x]\npath = "/x"\n[sources.x.verify]\nscheme = "github"\nsecret_file = "gh.key"\n',
    )
    cfg = config.load(Path("../etc/hookgate.toml"), {})
    assert cfg.path == path.resolve()
    assert cfg.sources["x"].verify.secrets == ["from-config-folder"]


def test_secret_file_from_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "gh.key").write_text("from-systemd\r\n")
    (tmp_path / "gh.key").write_text("from-config-folder\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = write(
        tmp_path,
        '[sources.x]\npath = "/x"\n[sources.x.verify]\nscheme = "github"\nsecret_file = "gh.key"\n',
    )
    cfg = config.load(path)  # the process environment
    assert cfg.sources["x"].verify.secrets == ["from-systemd"]


def test_secret_file_credentials_directory_from_given_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``load(path, environ)`` must take CREDENTIALS_DIRECTORY from ``environ`` too,
    like every ${NAME}: one environment, not two."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "gh.key").write_text("from-systemd\n")
    cfg = load(
        tmp_path,
        '[sources.x]\npath = "/x"\n[sources.x.verify]\nscheme = "github"\nsecret_file = "gh.key"\n',
        {"CREDENTIALS_DIRECTORY": str(creds)},
    )
    assert cfg.sources["x"].verify.secrets == ["from-systemd"]


def test_secret_file_keeps_inner_whitespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "k").write_text(" two words \n")
    cfg = load(
        tmp_path,
        '[sources.x]\npath = "/x"\n[sources.x.verify]\nscheme = "github"\nsecret_file = "k"\n',
    )
    assert cfg.sources["x"].verify.secrets == [" two words "]


def test_missing_secret_file_names_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    text = """
    [sources.x]
    path = "/x"
    [sources.x.verify]
    scheme = "github"
    secret_file = "missing.key"
    """
    errors = errors_of(tmp_path, text)
    assert errors[0].startswith("sources.x.verify.secret_file: cannot read secret file")
    assert "missing.key" in errors[0]
    assert f"(line {line_of(text, 'secret_file')})" in errors[0]


def test_admin_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "admin.token").write_text("tok\n")
    cfg = load(tmp_path, '[admin]\ntoken_file = "admin.token"\n')
    assert cfg.admin.token == "tok"
    assert cfg.admin.token_file is None


# -- [delivery] inheritance --------------------------------------------------------------


def test_delivery_defaults_inherited_and_overridden(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        MINIMAL_SOURCE
        + """
        [delivery]
        timeout = "5s"
        max_attempts = 7
        initial_backoff = "2s"
        max_backoff = "10m"
        concurrency = 4

        [destinations.inherits]
        url = "http://127.0.0.1:5000/a"
        sources = ["x"]

        [destinations.overrides]
        url = "http://127.0.0.1:5000/b"
        sources = ["x"]
        timeout = "30s"
        max_attempts = 3
        max_age = "1h"
        concurrency = 1
        rate_limit = 2.5
        """,
    )
    inherits = cfg.destinations["inherits"].policy
    assert inherits == cfg.delivery
    assert (inherits.timeout, inherits.max_attempts, inherits.concurrency) == (5, 7, 4)
    assert inherits.max_age == 3 * 86400  # the built-in default, via [delivery]
    assert inherits.rate_limit is None

    overrides = cfg.destinations["overrides"].policy
    assert overrides.timeout == 30
    assert overrides.max_attempts == 3
    assert overrides.max_age == 3600
    assert overrides.concurrency == 1
    assert overrides.rate_limit == 2.5
    # Not overridden: still from [delivery].
    assert overrides.initial_backoff == 2
    assert overrides.max_backoff == 600


def test_built_in_delivery_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, MINIMAL_SOURCE + '[destinations.d]\nurl = "http://h/"\nsources = ["x"]\n')
    policy = cfg.destinations["d"].policy
    assert policy == config.DeliveryPolicy()
    assert (policy.timeout, policy.max_attempts, policy.max_age) == (10, 12, 3 * 86400)
    assert (policy.initial_backoff, policy.max_backoff, policy.concurrency) == (1, 3600, 16)


def test_invalid_override_names_destination_key(tmp_path: Path) -> None:
    text = (
        MINIMAL_SOURCE
        + """
    [destinations.d]
    url = "http://h/"
    sources = ["x"]
    concurrency = 0
    """
    )
    assert errors_of(tmp_path, text) == [
        "destinations.d.concurrency: expected an integer >= 1, got 0"
        f" (line {line_of(text, 'concurrency')})"
    ]


@pytest.mark.parametrize("count", [-1, 65])
@pytest.mark.parametrize("key", ["delivery_processes", "ingest_processes"])
def test_process_counts_out_of_range_name_their_key(tmp_path: Path, key: str, count: int) -> None:
    text = f"[server]\n{key} = {count}\n"
    assert errors_of(tmp_path, text) == [
        f"server.{key}: expected an integer from 0 to 64, got {count} (line 2)"
    ]


@pytest.mark.parametrize(
    ("key", "default", "chosen"), [("delivery_processes", 0, 1), ("ingest_processes", 0, 2)]
)
def test_process_counts_default_and_set(
    tmp_path: Path, key: str, default: int, chosen: int
) -> None:
    assert getattr(load(tmp_path, MINIMAL_SOURCE).server, key) == default
    text = MINIMAL_SOURCE + f"\n[server]\n{key} = {chosen}\n"
    assert getattr(load(tmp_path, text).server, key) == chosen


def test_max_backoff_below_initial(tmp_path: Path) -> None:
    text = '[delivery]\ninitial_backoff = "10s"\nmax_backoff = "1s"\n'
    assert errors_of(tmp_path, text) == [
        "delivery.max_backoff: expected >= initial_backoff, got 1.0 (line 3)"
    ]


# -- paths -------------------------------------------------------------------------------


def test_relative_storage_path_resolved_against_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc" / "hookgate"
    conf_dir.mkdir(parents=True)
    write(conf_dir, '[storage]\npath = "data/hookgate.db"\n')
    monkeypatch.chdir(tmp_path)
    cfg = config.load(Path("etc/hookgate/hookgate.toml"), {})
    assert cfg.storage.path == str(conf_dir.resolve() / "data" / "hookgate.db")
    assert Path(cfg.storage.path).is_absolute()


def test_default_storage_path_in_config_folder(tmp_path: Path) -> None:
    cfg = load(tmp_path, "")
    assert cfg.storage.path == str(tmp_path.resolve() / "hookgate.db")


def test_absolute_storage_path_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "x.db"
    cfg = load(tmp_path, f'[storage]\npath = "{target}"\n')
    assert cfg.storage.path == str(target)


def test_tls_paths_resolved_and_paired(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[server]\ntls_cert = "tls/cert.pem"\ntls_key = "tls/key.pem"\n')
    assert cfg.server.tls_cert == str(tmp_path.resolve() / "tls" / "cert.pem")
    assert cfg.server.tls_key == str(tmp_path.resolve() / "tls" / "key.pem")
    errors = errors_of(tmp_path, '[server]\ntls_cert = "tls/cert.pem"\n')
    assert errors == ["server.tls_cert: tls_cert and tls_key must be set together (line 2)"]


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOKGATE_CONFIG", raising=False)
    assert config.config_path(None) == Path(config.DEFAULT_PATH)
    monkeypatch.setenv("HOOKGATE_CONFIG", "/from/env.toml")
    assert config.config_path(None) == Path("/from/env.toml")
    assert config.config_path("/explicit.toml") == Path("/explicit.toml")


# -- the documented sample ----------------------------------------------------------------


def test_documented_sample_is_accepted(tmp_path: Path) -> None:
    cfg = load(tmp_path, SAMPLE, SAMPLE_ENV)
    folder = tmp_path.resolve()
    assert cfg.server.listen == "0.0.0.0:8080"
    assert cfg.server.max_body == 1024**2
    assert cfg.server.request_timeout == 15
    assert cfg.server.trusted_proxies == []
    assert cfg.server.tls_cert == str(folder / "tls" / "cert.pem")
    assert cfg.server.tls_key == str(folder / "tls" / "key.pem")
    assert cfg.admin.listen == "127.0.0.1:9090"
    assert cfg.admin.token == "admin-token-value"
    assert cfg.storage.path == str(folder / "hookgate.db")
    assert (cfg.storage.retention, cfg.storage.sync) == (7 * 86400, "full")
    assert (cfg.log.level, cfg.log.format) == ("info", "json")
    assert cfg.delivery == config.DeliveryPolicy(
        timeout=config.Duration(10),
        max_attempts=12,
        max_age=config.Duration(3 * 86400),
        initial_backoff=config.Duration(1),
        max_backoff=config.Duration(3600),
        concurrency=16,
        rate_limit=50,
    )

    stripe = cfg.sources["stripe"]
    assert stripe.path == "/hooks/stripe"
    assert stripe.allow_ips == []
    assert (stripe.event_type, stripe.event_id) == ("json:type", "json:id")
    assert stripe.dedup_window == 86400
    assert stripe.verify.scheme == "stripe"
    assert stripe.verify.secrets == ["whsec_stripe_value"]
    assert stripe.verify.tolerance == 300

    custom = cfg.sources["custom"].verify
    assert (custom.scheme, custom.header, custom.algorithm) == (
        "hmac",
        "X-Webhook-Signature",
        "sha256",
    )
    assert (custom.encoding, custom.prefix, custom.secrets) == ("hex", "", ["custom-secret-value"])

    orders = cfg.destinations["orders"]
    assert orders.name == "orders"
    assert orders.url == "http://127.0.0.1:5000/webhooks/stripe"
    assert orders.sources == ["stripe"]
    assert orders.events == ["payment_intent.*", "charge.refunded"]
    assert orders.forward_headers == ["Stripe-Signature", "User-Agent"]
    assert orders.headers == {"X-Env": "prod"}
    assert (orders.sign, orders.secret) == ("standard", STANDARD_SECRET)
    assert (orders.ordered, orders.batch_max) == (False, 1)
    assert orders.batch_wait == pytest.approx(0.05)
    assert orders.policy == cfg.delivery


def test_documented_sample_with_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SAMPLE_ENV.items():
        monkeypatch.setenv(name, value)
    cfg = config.load(write(tmp_path, SAMPLE))
    assert cfg.admin.token == "admin-token-value"


def test_documented_sample_every_destination_override(tmp_path: Path) -> None:
    """The sample's closing comment: these keys may be set per destination too."""
    overrides = """
    timeout = "3s"
    max_attempts = 2
    max_age = "1d"
    initial_backoff = "100ms"
    max_backoff = "5m"
    concurrency = 3
    rate_limit = 7
    """
    cfg = load(tmp_path, SAMPLE + textwrap.dedent(overrides), SAMPLE_ENV)
    assert cfg.destinations["orders"].policy == config.DeliveryPolicy(
        timeout=config.Duration(3),
        max_attempts=2,
        max_age=config.Duration(86400),
        initial_backoff=config.Duration(0.1),
        max_backoff=config.Duration(300),
        concurrency=3,
        rate_limit=7,
    )


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, "")
    assert cfg.server == config.ServerConfig()
    assert cfg.sources == {}
    assert cfg.destinations == {}
    assert cfg.path == (tmp_path / "hookgate.toml").resolve()


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load(tmp_path, "")
    with pytest.raises(AttributeError):
        cfg.server.listen = "x"  # type: ignore[misc]


def test_os_environ_untouched(tmp_path: Path) -> None:
    before = dict(os.environ)
    load(tmp_path, SAMPLE, SAMPLE_ENV)
    assert dict(os.environ) == before


# -- the storage check of check-config (issue 8) --------------------------------------------


def test_storage_directory_is_not_checked_by_plain_loading(tmp_path: Path) -> None:
    """serve opens the store itself, which reports a missing directory its own way."""
    cfg = load(tmp_path, '[storage]\npath = "missing/hookgate.db"\n')
    assert cfg.storage.path == str(tmp_path.resolve() / "missing" / "hookgate.db")


def test_storage_directory_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path, '[log]\nlevel = "info"\n[storage]\npath = "missing/hookgate.db"\n')
    with pytest.raises(ConfigError) as info:
        config.load(path, {}, check_storage=True)
    missing = tmp_path.resolve() / "missing"
    assert info.value.errors == [f"storage.path: directory {missing} does not exist (line 4)"]


def test_storage_check_is_reported_with_the_other_errors(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nlisten = "x"\n[storage]\npath = "/nonexistent/db/h.db"\n')
    with pytest.raises(ConfigError) as info:
        config.load(path, {}, check_storage=True)
    assert [e.split(": ")[0] for e in info.value.errors] == ["server.listen", "storage.path"]


def test_storage_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "hookgate.db").mkdir()
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, ""), {}, check_storage=True)
    assert info.value.errors == [
        f"storage.path: {tmp_path.resolve() / 'hookgate.db'} is not a regular file"
    ]


def test_storage_directory_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, '[storage]\npath = "data/h.db"\n'), {}, check_storage=True)
    assert info.value.errors == [
        f"storage.path: {tmp_path.resolve() / 'data'} is not a directory (line 2)"
    ]


def test_storage_check_passes_for_a_usable_directory_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert config.load(path, {}, check_storage=True).storage.path.endswith("hookgate.db")
    (tmp_path / "hookgate.db").write_bytes(b"")
    (tmp_path / "hookgate.db-wal").write_bytes(b"")
    config.load(path, {}, check_storage=True)


# -- the PostgreSQL store's keys (issue 10) --------------------------------------------------


def test_storage_url_selects_postgresql_and_keeps_path_unresolved(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        '[storage]\nurl = "postgresql://hookgate@db:5432/hookgate"\npassword = "${PGPASS}"\n',
        {"PGPASS": "s3cret"},
    )
    assert cfg.storage.url == "postgresql://hookgate@db:5432/hookgate"
    assert cfg.storage.password == "s3cret"
    assert cfg.storage.lease == 30
    assert config.redacted(cfg)["storage"]["password"] == "***"


def test_storage_password_from_a_secret_file(tmp_path: Path) -> None:
    (tmp_path / "pg-password").write_text("from-file\n")
    cfg = load(
        tmp_path,
        '[storage]\nurl = "postgresql://hookgate@db/hookgate"\nsecret_file = "pg-password"\n',
    )
    assert cfg.storage.password == "from-file"
    assert cfg.storage.secret_file is None


def test_password_in_the_url_is_redacted(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[storage]\nurl = "postgresql://hookgate:s3cret@db/hookgate"\n')
    assert config.redacted(cfg)["storage"]["url"] == "postgresql://hookgate:***@db/hookgate"


def test_storage_url_errors_name_the_key(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        '[storage]\nurl = "mysql://db/x"\nlease = "10ms"\n',
    )
    assert errors == [
        "storage.url: expected a postgresql://user@host:port/database URL, got 'mysql' (line 2)",
        "storage.lease: must be at least 1s (line 3)",
    ]
    assert errors_of(tmp_path, '[storage]\npassword = "x"\n') == [
        "storage.password: only used with storage.url (PostgreSQL) (line 2)"
    ]
    assert errors_of(tmp_path, '[storage]\nurl = "postgresql://u:p@db/x"\npassword = "x"\n') == [
        "storage.password: the URL carries a password already: set it once (line 3)"
    ]


def test_check_config_does_not_check_storage_path_with_a_url(tmp_path: Path) -> None:
    text = '[storage]\npath = "missing/hookgate.db"\nurl = "postgresql://h@db/x"\n'
    cfg = config.load(write(tmp_path, text), {}, check_storage=True)
    assert cfg.storage.url == "postgresql://h@db/x"
