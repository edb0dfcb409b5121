"""The config loader, exercised through real TOML files and ``config.load``."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from hookgate import config
from hookgate.errors import ConfigError

STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

# The sample of /work/shared/design/config.md, verbatim except:
# - [sources.custom] gets a `path` (the sample's table has none, and path is required);
# - the commented-out optional keys (tls_cert, tls_key, rate_limit) are set, so that
#   every key the sample names is exercised.
SAMPLE = """
[server]                         # ingress: where providers POST webhooks
listen = "0.0.0.0:8080"          # host:port; "[::]:8080" for IPv6
max_body = "1MiB"                # larger bodies get 413 before they are read in full
request_timeout = "15s"          # the whole request must arrive within this (slow-client guard)
trusted_proxies = []             # CIDRs whose X-Forwarded-For is believed for the client IP
tls_cert = "tls/cert.pem"        # both set: the ingress speaks HTTPS itself
tls_key = "tls/key.pem"

[admin]                          # health, metrics, admin API and dashboard; keep it private
listen = "127.0.0.1:9090"
token = "${HOOKGATE_ADMIN_TOKEN}" # bearer token for /api/*; health and metrics need none

[storage]
path = "hookgate.db"             # SQLite file (WAL); the embedded default
retention = "7d"                 # delivered and dead messages older than this are pruned
sync = "full"                    # "full": fsync every group commit (survives power loss)
                                 # "normal": survives a crash of the process, not of the machine

[log]
level = "info"                   # debug | info | warning | error
format = "json"                  # json | console

[delivery]                       # defaults that every destination inherits
timeout = "10s"                  # per attempt, connect to last byte
max_attempts = 12                # then the delivery is dead (kept, retryable by hand)
max_age = "3d"                   # or dead once the message is older than this
initial_backoff = "1s"           # exponential with full jitter:
max_backoff = "1h"               #   delay = random(0, min(max, initial * 2**attempt))
concurrency = 16                 # requests in flight per destination
rate_limit = 50                  # requests per second per destination (unset: no limit)

[sources.stripe]                 # one table per inbound source; the key is its name
path = "/hooks/stripe"           # unique among sources
allow_ips = []                   # CIDRs; empty = anyone (checked after trusted_proxies)
event_type = "json:type"         # where the event type is: "json:<dotted.path>",
                                 #   "header:<Name>", or a fixed string "const:<value>"
event_id = "json:id"             # the provider's event id: duplicates of it are not
                                 #   delivered twice (same forms; unset: the scheme's
                                 #   default below, and no dedup where it has none)
dedup_window = "24h"             # how long an event_id is remembered

[sources.stripe.verify]
scheme = "stripe"                # none | hmac | standard | github | stripe | shopify |
                                 #   slack | gitlab | basic
secrets = ["${STRIPE_SECRET}"]   # several during a rotation: any one may match
tolerance = "5m"                 # for timestamped schemes: older or future requests fail

[sources.custom]
path = "/hooks/custom"

[sources.custom.verify]          # the generic HMAC scheme, for any other provider
scheme = "hmac"
header = "X-Webhook-Signature"   # where the signature is
algorithm = "sha256"             # sha1 | sha256 | sha512
encoding = "hex"                 # hex | base64
prefix = ""                      # e.g. "sha256=" is stripped before comparing
secrets = ["${CUSTOM_SECRET}"]

[destinations.orders]            # one table per downstream; the key is its name
url = "http://127.0.0.1:5000/webhooks/stripe"
sources = ["stripe"]             # which sources feed it (fan-out: many destinations
                                 #   may list the same source)
events = ["payment_intent.*", "charge.refunded"]   # glob filter on event type; unset = all
forward_headers = ["Stripe-Signature", "User-Agent"] # inbound headers passed on as-is
headers = { "X-Env" = "prod" }   # fixed extra headers
sign = "standard"                # none | standard | hmac-sha256
secret = "${ORDERS_SIGNING_SECRET}"  # standard: "whsec_<base64>"; hmac-sha256: any string
ordered = false                  # true: strict FIFO per destination (one at a time)
batch_max = 1                    # >1: up to this many events per POST (see interfaces.md)
batch_wait = "50ms"              # how long a batch may wait to fill
# timeout, max_attempts, max_age, initial_backoff, max_backoff, concurrency and
# rate_limit may be set here too, overriding [delivery]
"""

SAMPLE_ENV = {
    "HOOKGATE_ADMIN_TOKEN": "admin-token-value",
    "STRIPE_SECRET": "whsec_stripe_value",
    "CUSTOM_SECRET": "custom-secret-value",
    "ORDERS_SIGNING_SECRET": STANDARD_SECRET,
}

MINIMAL_SOURCE = """
[sources.x]
path = "/hooks/x"
"""


def write(tmp_path: Path, text: str, name: str = "hookgate.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: Mapping[str, str] | None = None) -> config.Config:
    return config.load(write(tmp_path, text), {} if env is None else env)


def errors_of(tmp_path: Path, text: str, env: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line of ``text`` (dedented) containing ``needle``."""
    lines = textwrap.dedent(text).splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


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


# -- unknown keys -----------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    text = """
    retries = 3

    [server]
    listen = "127.0.0.1:8080"
    """
    assert errors_of(tmp_path, text) == [f"retries: unknown key (line {line_of(text, 'retries')})"]


def test_unknown_top_level_table(tmp_path: Path) -> None:
    """A misspelt table is a key too; its line is the line of its header."""
    text = """
    [server]
    listen = "127.0.0.1:8080"

    [sever]
    listen = "127.0.0.1:8080"
    """
    assert errors_of(tmp_path, text) == [f"sever: unknown key (line {line_of(text, '[sever]')})"]


def test_unknown_key_in_server(tmp_path: Path) -> None:
    text = """
    [server]
    listen = "127.0.0.1:8080"
    max_bdy = "1MiB"
    """
    assert errors_of(tmp_path, text) == [
        f"server.max_bdy: unknown key (line {line_of(text, 'max_bdy')})"
    ]


def test_unknown_key_in_source(tmp_path: Path) -> None:
    text = """
    [sources.x]
    path = "/x"
    alow_ips = ["10.0.0.0/8"]
    """
    assert errors_of(tmp_path, text) == [
        f"sources.x.alow_ips: unknown key (line {line_of(text, 'alow_ips')})"
    ]


def test_unknown_key_in_source_verify(tmp_path: Path) -> None:
    text = """
    [sources.x]
    path = "/x"

    [sources.x.verify]
    scheme = "github"
    secrets = ["s"]
    tolerence = "5m"
    """
    assert errors_of(tmp_path, text) == [
        f"sources.x.verify.tolerence: unknown key (line {line_of(text, 'tolerence')})"
    ]


def test_unknown_key_in_destination(tmp_path: Path) -> None:
    text = (
        MINIMAL_SOURCE
        + """
    [destinations.y]
    url = "http://127.0.0.1:5000/"
    sources = ["x"]
    max_atempts = 3
    """
    )
    assert errors_of(tmp_path, text) == [
        f"destinations.y.max_atempts: unknown key (line {line_of(text, 'max_atempts')})"
    ]


def test_missing_required_key_names_full_path(tmp_path: Path) -> None:
    text = (
        MINIMAL_SOURCE
        + """
    [destinations.y]
    sources = ["x"]
    """
    )
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith("destinations.y.url: required key is missing")


def test_errors_from_several_tables_are_all_reported(tmp_path: Path) -> None:
    text = """
    [server]
    listen = "nope"
    [admin]
    listen = "127.0.0.1:99999"
    [sources.x]
    path = "no-slash"
    """
    errors = errors_of(tmp_path, text)
    assert [e.split(":")[0] for e in errors] == ["server.listen", "admin.listen", "sources.x.path"]


# -- enums --------------------------------------------------------------------------------


def test_bad_scheme_lists_choices(tmp_path: Path) -> None:
    text = """
    [sources.x]
    path = "/x"

    [sources.x.verify]
    scheme = "strpe"
    secrets = ["s"]
    """
    assert errors_of(tmp_path, text) == [
        "sources.x.verify.scheme: unknown value 'strpe' (expected one of: none, hmac, standard,"
        " github, stripe, shopify, slack, gitlab, basic)"
        f" (line {line_of(text, 'strpe')})"
    ]


@pytest.mark.parametrize(
    ("table", "key", "value", "choices"),
    [
        ("storage", "sync", "fsync", "full, normal"),
        ("log", "level", "verbose", "debug, info, warning, error"),
        ("log", "format", "xml", "json, console"),
    ],
)
def test_bad_enum_in_sections(
    tmp_path: Path, table: str, key: str, value: str, choices: str
) -> None:
    text = f'[{table}]\n{key} = "{value}"\n'
    assert errors_of(tmp_path, text) == [
        f"{table}.{key}: unknown value '{value}' (expected one of: {choices}) (line 2)"
    ]


def test_bad_sign_mode(tmp_path: Path) -> None:
    text = (
        MINIMAL_SOURCE
        + """
    [destinations.y]
    url = "http://127.0.0.1:5000/"
    sources = ["x"]
    sign = "hmac"
    """
    )
    assert errors_of(tmp_path, text) == [
        "destinations.y.sign: unknown value 'hmac' (expected one of: none, standard, hmac-sha256)"
        f" (line {line_of(text, 'sign =')})"
    ]


def test_bad_method_in_list(tmp_path: Path) -> None:
    text = '[sources.x]\npath = "/x"\nmethods = ["POST", "GET"]\n'
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith("sources.x.methods[1]: unknown value 'GET'")
    assert "(expected one of: POST, PUT, PATCH)" in errors[0]


def test_wrong_type_names_key(tmp_path: Path) -> None:
    text = '[delivery]\nmax_attempts = "3"\n'
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith("delivery.max_attempts: expected `int`, got `str`")
    assert errors[0].endswith("(line 2)")


def test_invalid_toml(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "[server\nlisten = 1\n")
    assert len(errors) == 1
    assert "invalid TOML" in errors[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load(tmp_path / "absent.toml", {})


# -- cross-references and values ----------------------------------------------------------


def test_destination_referencing_missing_source(tmp_path: Path) -> None:
    text = (
        MINIMAL_SOURCE
        + """
    [destinations.y]
    url = "http://127.0.0.1:5000/"
    sources = ["x", "stirpe"]
    """
    )
    assert errors_of(tmp_path, text) == [
        f"destinations.y.sources[1]: no source named 'stirpe' (line {line_of(text, 'stirpe')})"
    ]


def test_duplicate_source_paths(tmp_path: Path) -> None:
    text = """
    [sources.a]
    path = "/hooks/same"
    [sources.b]
    path = "/hooks/same"
    """
    assert errors_of(tmp_path, text) == [
        "sources.b.path: '/hooks/same' is already used by sources.a"
        f" (line {line_of(text, '[sources.b]') + 1})"
    ]


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


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "300.1.1.1", "not-an-ip", "fe80::/129"])
def test_bad_cidr(tmp_path: Path, cidr: str) -> None:
    text = f"""
    [server]
    trusted_proxies = ["10.0.0.0/8", "{cidr}"]
    [sources.x]
    path = "/x"
    allow_ips = ["{cidr}"]
    """
    expected = f"expected an IP address or CIDR such as 10.0.0.0/8, got {cidr!r}"
    assert errors_of(tmp_path, text) == [
        f"server.trusted_proxies[1]: {expected} (line {line_of(text, 'trusted_proxies')})",
        f"sources.x.allow_ips[0]: {expected} (line {line_of(text, 'allow_ips')})",
    ]


def test_good_cidrs(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [server]
        trusted_proxies = ["10.0.0.0/8", "192.168.1.1", "::1", "fd00::/8"]
        [sources.x]
        path = "/x"
        allow_ips = ["203.0.113.0/24", "2001:db8::/32"]
        """,
    )
    assert cfg.server.trusted_proxies == ["10.0.0.0/8", "192.168.1.1", "::1", "fd00::/8"]


@pytest.mark.parametrize("secret", ["plain-secret", "whsec_", "whsec_not*base64", "MfKQ9r8GKYqr"])
def test_sign_standard_needs_whsec_secret(tmp_path: Path, secret: str) -> None:
    text = (
        MINIMAL_SOURCE
        + f"""
    [destinations.y]
    url = "http://127.0.0.1:5000/"
    sources = ["x"]
    sign = "standard"
    secret = "{secret}"
    """
    )
    assert errors_of(tmp_path, text) == [
        'destinations.y.secret: expected "whsec_<base64>" for sign = "standard"'
        f" (line {line_of(text, 'secret =')})"
    ]


def test_sign_needs_a_secret(tmp_path: Path) -> None:
    text = (
        MINIMAL_SOURCE
        + """
    [destinations.y]
    url = "http://127.0.0.1:5000/"
    sources = ["x"]
    sign = "hmac-sha256"
    """
    )
    # Not in the file: the line is its table's.
    assert errors_of(tmp_path, text) == [
        'destinations.y.secret: sign = "hmac-sha256" needs a secret'
        f" (line {line_of(text, '[destinations.y]')})"
    ]


def test_sign_standard_accepts_whsec_secret(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        MINIMAL_SOURCE
        + f"""
        [destinations.y]
        url = "http://127.0.0.1:5000/"
        sources = ["x"]
        sign = "standard"
        secret = "{STANDARD_SECRET}"
        """,
    )
    assert cfg.destinations["y"].sign == "standard"
    assert cfg.destinations["y"].secret == STANDARD_SECRET


def test_verify_standard_needs_whsec_secrets(tmp_path: Path) -> None:
    text = f"""
    [sources.x]
    path = "/x"
    [sources.x.verify]
    scheme = "standard"
    secrets = ["{STANDARD_SECRET}", "nope"]
    """
    assert errors_of(tmp_path, text) == [
        f'sources.x.verify.secrets[1]: expected "whsec_<base64>" (line {line_of(text, "secrets")})'
    ]


def test_scheme_needs_secret(tmp_path: Path) -> None:
    text = '[sources.x]\npath = "/x"\n[sources.x.verify]\nscheme = "github"\n'
    assert errors_of(tmp_path, text) == [
        'sources.x.verify.secrets: scheme "github" needs at least one secret (line 3)'
    ]


def test_bad_event_expression(tmp_path: Path) -> None:
    text = '[sources.x]\npath = "/x"\nevent_id = "body.id"\n'
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith("sources.x.event_id: expected")
    assert errors[0].endswith("(line 3)")


def test_bad_destination_url(tmp_path: Path) -> None:
    text = MINIMAL_SOURCE + '[destinations.y]\nurl = "ftp://x/"\nsources = ["x"]\n'
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith("destinations.y.url: expected an http:// or https:// URL")


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


# -- header names and values (issue 8) ----------------------------------------------------


def destination_with(headers: str, forward: str = "[]") -> str:
    return (
        MINIMAL_SOURCE
        + f"""
    [destinations.orders]
    url = "http://127.0.0.1:5000/"
    sources = ["x"]
    forward_headers = {forward}
    headers = {headers}
    """
    )


@pytest.mark.parametrize(
    ("value", "described"),
    [
        (r"prod\n", "a line feed (U+000A) at offset 4"),
        (r"prod\r\nX-Injected: 1", "a carriage return (U+000D) at offset 4"),
        (r"a\u0000b", "a NUL (U+0000) at offset 1"),
        (r"\u001b[31m", "a control character (U+001B) at offset 0"),
        (r"del\u007f", "a control character (U+007F) at offset 3"),
    ],
)
def test_header_value_with_a_control_character(tmp_path: Path, value: str, described: str) -> None:
    text = destination_with(f'{{ "X-Env" = "{value}" }}')
    assert errors_of(tmp_path, text) == [
        f'destinations.orders.headers."X-Env": the value holds {described}; a header value '
        f"may contain no control character but tab (line {line_of(text, 'headers = {')})"
    ]


def test_header_value_error_never_echoes_the_value(tmp_path: Path) -> None:
    text = destination_with('{ Authorization = "Bearer sk_live_abc123\\n" }')
    [error] = errors_of(tmp_path, text)
    assert error.startswith('destinations.orders.headers."Authorization": the value holds')
    assert "sk_live" not in error


def test_header_value_from_the_environment_with_a_newline(tmp_path: Path) -> None:
    """The usual way one gets there: `$(cat token)` or a file with a trailing newline."""
    text = destination_with('{ "X-Token" = "${TOKEN}" }')
    [error] = errors_of(tmp_path, text, {"TOKEN": "abc\n"})
    assert error.startswith('destinations.orders.headers."X-Token": the value holds a line feed')


def test_header_values_may_hold_tabs_spaces_and_non_ascii(tmp_path: Path) -> None:
    cfg = load(tmp_path, destination_with('{ "X-A" = "a\\tb c", "X-B" = "caf\u00e9 \u2713" }'))
    assert cfg.destinations["orders"].headers == {"X-A": "a\tb c", "X-B": "caf\u00e9 \u2713"}


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Bad Name", '"Bad Name"'),
        ("X-Env:", '"X-Env:"'),
        ("", '""'),
        ("X(1)", '"X(1)"'),
        ("X-\u00e9", '"X-\\u00e9"'),
        ("X\\nY", '"X\\nY"'),  # a TOML escape: a real line feed in the name
    ],
)
def test_header_name_must_be_a_token(tmp_path: Path, name: str, shown: str) -> None:
    text = destination_with(f'{{ "{name}" = "v" }}')
    assert errors_of(tmp_path, text) == [
        f"destinations.orders.headers.{shown}: {shown} is not a valid header name "
        "(letters, digits and !#$%&'*+-.^_`|~ only, no spaces or colons) "
        f"(line {line_of(text, 'headers = {')})"
    ]


def test_header_names_of_every_token_character_are_accepted(tmp_path: Path) -> None:
    name = "!#$%&'*+-.^_`|~09azAZ"
    text = destination_with(f'{{ "{name}" = "v" }}', forward=f'["X-Request-Id", "{name}"]')
    assert load(tmp_path, text).destinations["orders"].headers == {name: "v"}


def test_forward_header_names_must_be_tokens(tmp_path: Path) -> None:
    text = destination_with("{}", forward='["User-Agent", "X Forwarded", "Stripe-Signature:"]')
    line = line_of(text, "forward_headers")
    assert errors_of(tmp_path, text) == [
        f'destinations.orders.forward_headers[1]: "X Forwarded" is not a valid header name '
        f"(letters, digits and !#$%&'*+-.^_`|~ only, no spaces or colons) (line {line})",
        f'destinations.orders.forward_headers[2]: "Stripe-Signature:" is not a valid header '
        f"name (letters, digits and !#$%&'*+-.^_`|~ only, no spaces or colons) (line {line})",
    ]


def test_headers_as_a_table_of_their_own(tmp_path: Path) -> None:
    text = (
        MINIMAL_SOURCE
        + """
    [destinations.orders]
    url = "http://127.0.0.1:5000/"
    sources = ["x"]

    [destinations.orders.headers]
    "X-Env" = "prod\\r"
    """
    )
    [error] = errors_of(tmp_path, text)
    assert error.startswith('destinations.orders.headers."X-Env": the value holds a carriage')
    assert error.endswith(f"(line {line_of(text, '[destinations.orders.headers]')})")


def test_alert_headers_are_checked_too(tmp_path: Path) -> None:
    text = '[alerts]\nurl = "http://127.0.0.1:5000/"\nsign = "none"\nheaders = { "A B" = "x\\n" }\n'
    errors = errors_of(tmp_path, text)
    assert [e.split(": ")[0] for e in errors] == ['alerts.headers."A B"', 'alerts.headers."A B"']
    assert "not a valid header name" in errors[0]
    assert "line feed" in errors[1]


# -- every error in one pass (issue 8) -----------------------------------------------------

THREE_MISTAKES = """
[server]
listen = "0.0.0.0:99999"

[delivery]
timeout = "soon"

[sources.x]
path = "/x"

[destinations.y]
url = "http://127.0.0.1:5000/"
sources = ["x"]
max_atempts = 3
"""


def test_three_mistakes_in_three_tables_are_three_errors(tmp_path: Path) -> None:
    text = THREE_MISTAKES
    assert errors_of(tmp_path, text) == [
        f'server.listen: expected "host:port" or "[::]:port", got \'0.0.0.0:99999\' '
        f"(line {line_of(text, 'listen')})",
        'delivery.timeout: expected a duration with a unit such as "250ms", "10s", '
        f"\"5m\", got 'soon' (line {line_of(text, 'soon')})",
        f"destinations.y.max_atempts: unknown key (line {line_of(text, 'max_atempts')})",
    ]


def test_every_kind_of_error_at_once_without_echoes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Env, secret file, decoding and validation errors together; none repeated.

    The unset variable leaves an empty secret and the missing file an empty signing
    secret: "a secret is empty" or 'sign = "standard" needs a secret' would only
    say the same thing again.
    """
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    text = """
    retries = 3

    [admin]
    listen = "127.0.0.1:9090"
    token_file = "admin.token"

    [sources.x]
    path = "x"

    [sources.x.verify]
    scheme = "github"
    secrets = ["${GITHUB_SECRET}"]

    [destinations.y]
    url = "http://127.0.0.1:5000/"
    sources = ["x"]
    sign = "standard"
    secret_file = "signing.key"
    batch_max = 0
    """
    errors = errors_of(tmp_path, text)
    assert [e.split(": ")[0] for e in errors] == [
        "retries",
        "admin.token_file",
        "sources.x.path",
        "sources.x.verify.secrets[0]",
        "destinations.y.secret_file",
        "destinations.y.batch_max",
    ]
    assert errors[3].startswith(
        "sources.x.verify.secrets[0]: environment variable GITHUB_SECRET is not set"
    )


def test_several_errors_in_one_table(tmp_path: Path) -> None:
    text = """
    [delivery]
    timeout = "soon"
    max_attempts = "many"
    concurency = 4
    max_backoff = "1x"
    """
    errors = errors_of(tmp_path, text)
    assert [e.split(": ")[0] for e in errors] == [
        "delivery.timeout",
        "delivery.max_attempts",
        "delivery.concurency",
        "delivery.max_backoff",
    ]
    assert errors[2] == f"delivery.concurency: unknown key (line {line_of(text, 'concurency')})"


def test_several_errors_in_a_nested_table(tmp_path: Path) -> None:
    text = """
    [sources.x]
    path = "/x"
    methods = ["GET"]
    dedup_windw = "1h"

    [sources.x.verify]
    scheme = "strpe"
    tolerence = "5m"
    """
    assert [e.split(": ")[0] for e in errors_of(tmp_path, text)] == [
        "sources.x.methods[0]",
        "sources.x.dedup_windw",
        "sources.x.verify.scheme",
        "sources.x.verify.tolerence",
    ]


def test_a_value_left_out_is_not_checked_against_the_others(tmp_path: Path) -> None:
    """max_backoff is wrong; its default (1h) must not be reported as below 2h."""
    text = '[delivery]\ninitial_backoff = "2h"\nmax_backoff = "1x"\n'
    [error] = errors_of(tmp_path, text)
    assert error.startswith("delivery.max_backoff: expected a duration")


def test_a_source_that_does_not_decode_is_still_a_source(tmp_path: Path) -> None:
    text = """
    [sources.x]
    methods = ["POST"]

    [destinations.y]
    url = "http://127.0.0.1:5000/"
    sources = ["x"]
    """
    assert errors_of(tmp_path, text) == [
        f"sources.x.path: required key is missing (line {line_of(text, '[sources.x]')})"
    ]


def test_an_inherited_mistake_is_reported_once(tmp_path: Path) -> None:
    text = (
        MINIMAL_SOURCE
        + """
    [delivery]
    timeout = "0s"

    [destinations.a]
    url = "http://127.0.0.1:5000/"
    sources = ["x"]

    [destinations.b]
    url = "http://127.0.0.1:5001/"
    sources = ["x"]
    initial_backoff = "2h"
    """
    )
    assert errors_of(tmp_path, text) == [
        f"delivery.timeout: expected a duration > 0, got 0.0 (line {line_of(text, 'timeout')})",
        # b's own initial_backoff is above the max_backoff it inherits: b's mistake.
        "destinations.b.max_backoff: expected >= initial_backoff, got 3600.0"
        f" (line {line_of(text, '[destinations.b]')})",
    ]


def test_errors_are_in_file_order(tmp_path: Path) -> None:
    text = """
    [destinations.y]
    url = "ftp://nope/"
    sources = ["x"]

    [sources.x]
    path = "/x"
    event_type = "body:type"

    [server]
    listen = "nope"
    """
    assert [e.split(": ")[0] for e in errors_of(tmp_path, text)] == [
        "destinations.y.url",
        "sources.x.event_type",
        "server.listen",
    ]


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
