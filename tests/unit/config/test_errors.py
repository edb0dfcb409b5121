"""Every error names its key path and line, all of them found in one pass."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from hookgate import config, providers
from hookgate.config import locate
from hookgate.errors import ConfigError

from .samples import (
    MINIMAL_SOURCE,
    STANDARD_SECRET,
    THREE_MISTAKES,
    errors_of,
    line_of,
    load,
)

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
        'sources.x.verify.scheme: unknown scheme "strpe" (expected one of: none, hmac, standard,'
        " github, stripe, shopify, slack, gitlab, basic, "
        + ", ".join(providers.SCHEMES[9:])
        + f") (line {line_of(text, 'strpe')})"
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
        f'{table}.{key}: unknown {key} "{value}" (expected one of: {choices}) (line 2)'
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
        'destinations.y.sign: unknown sign "hmac" (expected one of: none, standard, hmac-sha256)'
        f" (line {line_of(text, 'sign =')})"
    ]


def test_bad_method_in_list(tmp_path: Path) -> None:
    text = '[sources.x]\npath = "/x"\nmethods = ["POST", "GET"]\n'
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith('sources.x.methods[1]: unknown method "GET"')
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


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:99999/x", "expected an http:// or https:// URL: Port out of range"),
        ("http://127.0.0.1:abc/x", "expected an http:// or https:// URL: Invalid URL: port"),
        ("http://127.0.0.1:0/x", "expected a port from 1 to 65535, got 0"),
        ("http://exa mple.com/x", "expected a URL without tabs or line breaks, nor spaces"),
        ("http://h.example:80 /x", "expected a URL without tabs or line breaks, nor spaces"),
        ("http://h.example/a\tb", "expected a URL without tabs or line breaks, nor spaces"),
    ],
)
def test_destination_url_the_client_could_not_send_to(
    tmp_path: Path, url: str, expected: str
) -> None:
    """Each of these passed the check once, then failed the daemon's start with a
    traceback (or, for port 0, sent to port 80)."""
    text = MINIMAL_SOURCE + f'[destinations.y]\nurl = "{url}"\nsources = ["x"]\n'
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith(f"destinations.y.url: {expected}"), errors[0]
    assert errors[0].endswith(f"(line {line_of(text, 'url =')})")


def test_a_space_in_a_destination_urls_path_is_taken(tmp_path: Path) -> None:
    """The client sends it as %20, as it always did: not an error."""
    text = (
        MINIMAL_SOURCE + '[destinations.y]\nurl = "http://h.example/a b?q=c d"\nsources = ["x"]\n'
    )
    assert load(tmp_path, text).destinations["y"].url == "http://h.example/a b?q=c d"


def test_alerts_url_is_checked_as_a_destination_url_is(tmp_path: Path) -> None:
    text = MINIMAL_SOURCE + '[alerts]\nurl = "http://127.0.0.1:70000/alerts"\nsign = "none"\n'
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith("alerts.url: expected an http:// or https:// URL: Port out")


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


# -- locating a key ----------------------------------------------------------------------

LOCATED = """\
[server]
listen = "x"

[sources.a]
path = "/a"

[sources.a.verify]
scheme = "github"

[destinations.d]
url = "http://h/"
"""


def test_line_of_a_key_set_in_its_table() -> None:
    lines = LOCATED.splitlines()
    assert locate.line_of(lines, "server.listen") == 2
    assert locate.line_of(lines, "sources.a.verify.scheme") == 8
    assert locate.line_of(lines, "destinations.d.url") == 11


def test_line_of_a_key_not_in_the_file_is_its_table_header() -> None:
    lines = LOCATED.splitlines()
    assert locate.line_of(lines, "sources.a.allow_ips[0]") == 4
    assert locate.line_of(lines, "destinations.d.secret") == 10
    assert locate.line_of(lines, "sources.a.verify") == 7  # a table of its own
    assert locate.line_of(lines, "alerts.url") is None


def test_explain_names_the_key_of_a_msgspec_error() -> None:
    try:
        msgspec.convert({"scheme": "strpe"}, config.VerifyConfig)
    except msgspec.ValidationError as exc:
        problem = locate.explain(exc, config.VerifyConfig, "sources.x.verify")
    assert problem == locate.Problem(
        "sources.x.verify.scheme",
        'unknown scheme "strpe" (expected one of: none, hmac, standard, github, stripe,'
        " shopify, slack, gitlab, basic, " + ", ".join(providers.SCHEMES[9:]) + ")",
        ["scheme"],
    )
