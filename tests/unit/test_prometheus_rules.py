"""examples/prometheus/hookgate-alerts.yml: valid rules, over metrics hookgate exports.

promtool (Debian's ``prometheus`` package, installed by .ci/setup) checks the rules
and runs their unit tests (hookgate-alerts.test.yml); those two tests skip only where
promtool is missing. The YAML is also read here: every metric a rule names must be
one hookgate exports, with labels it has, so a renamed metric fails here and not
silently in someone's Prometheus.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from hookgate import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "examples" / "prometheus" / "hookgate-alerts.yml"
RULE_TESTS = RULES.with_name("hookgate-alerts.test.yml")

# Not hookgate's: Prometheus's own per-target series.
PROMETHEUS_SERIES = {"up"}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
KEYWORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}
# The expected alerts: the four rules of hookgate's [alerts] and the older ones.
ALERTS = {
    "HookgateDown",
    "HookgateBacklogOld",
    "HookgateDeliveriesDead",
    "HookgateCircuitOpen",
    "HookgateDestinationFailing",
    "HookgateSourceSilent",
    "HookgateTrafficSpike",
    "HookgateSignatureFailures",
}


def exported() -> dict[str, set[str]]:
    """Each series name hookgate's /metrics can show, with its labels."""
    series: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            # (_name, _type, _labelnames: prometheus_client has no public accessor.)
            name, kind, labelnames = value._name, value._type, value._labelnames
        elif isinstance(value, metrics.Counter | metrics.Histogram):
            name, kind, labelnames = value.name, value.describe()[0].type, value.labelnames
        else:
            continue
        for suffix in _SUFFIXES[kind]:
            labels = set(labelnames)
            if suffix == "_bucket":
                labels.add("le")
            series[name + suffix] = labels
    return series


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """The series a PromQL expression selects: (name, label names it matches on)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings hold no names
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\boffset\s+\w+", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = []
    for match in re.finditer(r"\b([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?", text):
        name, matchers = match[1], match[2] or ""
        if name in KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # a keyword or a function
        labels = set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
        found.append((name, labels))
    return found


def test_the_rules_cover_hookgates_alerts() -> None:
    names = [rule["alert"] for rule in rules()]
    assert sorted(names) == sorted(ALERTS)
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_every_rule_names_only_metrics_hookgate_exports() -> None:
    series = exported()
    for rule in rules():
        selected = selectors(rule["expr"])
        assert selected, f"{rule['alert']}: no series found in {rule['expr']!r}"
        for name, labels in selected:
            if name in PROMETHEUS_SERIES:
                continue
            assert name in series, f"{rule['alert']}: hookgate exports no {name}"
            unknown = labels - series[name] - TARGET_LABELS
            assert not unknown, f"{rule['alert']}: {name} has no label {unknown}"


def test_the_selector_reader_finds_what_a_rule_names() -> None:
    expr = (
        'sum by (instance, destination) (rate(hookgate_delivery_attempts_total{outcome!="x"}'
        "[5m] offset 1h)) > 0.5 and on (job) up == 0"
    )
    assert selectors(expr) == [
        ("hookgate_delivery_attempts_total", {"outcome"}),
        ("up", set()),
    ]


def test_a_renamed_metric_would_be_caught() -> None:
    series = exported()
    assert "hookgate_webhooks_received_total" in series
    assert "hookgate_webhooks_received" not in series  # a counter is read with _total
    assert series["hookgate_webhooks_rejected_total"] == {"source", "reason"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; see .ci/setup)")
    return subprocess.run(
        [tool, *args],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_runs_the_rules_unit_tests() -> None:
    """Each alert fires on the series that should page and not on the others."""
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
