"""deploy/monitoring/: the Prometheus alert rules and the Grafana dashboard (issue 19.6).

- the rules pass `promtool check rules`, and `promtool test rules` shows each alert firing on the
  series it is for and quiet on the harmless ones (the theft alert never pages on a just-spent
  token presented again);
- every metric a rule or a panel names is one authserver exports (authserver/metrics.py), or
  one Prometheus makes itself (`up`, the blackbox exporter's `probe_success`);
- the dashboard matches a JSON schema of the Grafana dashboard fields it uses.
Without promtool (Debian's `prometheus` package) the promtool tests skip, saying so; the
metric-name and schema checks always run.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess

import jsonschema
import pytest
import yaml

from tests.live import ROOT

MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "authserver-alerts.yml"
DASHBOARD = MONITORING / "authserver-dashboard.json"
# Series Prometheus itself (or its blackbox exporter) produces.
EXTERNAL = {"up", "probe_success"}
PROMQL_WORDS = {
    "sum", "by", "without", "rate", "increase", "max", "min", "avg", "and", "or", "unless",
    "histogram_quantile", "le", "bool", "offset", "on", "ignoring", "group_left", "count",
}  # fmt: skip


def exported_metrics() -> set[str]:
    """Every series name authserver/metrics.py exports, with the suffixes the client adds."""
    text = (ROOT / "authserver" / "metrics.py").read_text()
    names: set[str] = set()
    for kind, name in re.findall(r'(Counter|Histogram|GaugeMetricFamily)\(\s*"([a-z_]+)"', text):
        if kind == "Counter":
            names |= {f"{name}_total", f"{name}_created"}
        elif kind == "Histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_created"}
        else:
            names.add(name)
    return names


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects: identifiers outside label matchers, strings and
    range selectors, that are not PromQL keywords or functions."""
    stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
    # Label lists of aggregations and vector matching.
    stripped = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", stripped
    )
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped))
    functions = set(re.findall(r"([a-zA-Z_]+)\s*\(", stripped))
    return {w for w in words - functions - PROMQL_WORDS if not w.startswith("$")}


def rule_exprs(rules: dict) -> list[tuple[str, str]]:
    return [
        (rule.get("alert") or rule.get("record"), rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def unknown_metrics(exprs: list[tuple[str, str]]) -> list[str]:
    known = exported_metrics() | EXTERNAL
    return [
        f"{name}: {metric}" for name, expr in exprs for metric in sorted(metric_names(expr) - known)
    ]


def test_every_metric_in_the_rules_exists():
    rules = yaml.safe_load(RULES.read_text())
    assert unknown_metrics(rule_exprs(rules)) == []
    # And the check catches a misspelt one.
    broken = copy.deepcopy(rules)
    broken["groups"][0]["rules"][0]["expr"] = (
        "increase(authserver_refresh_reuse_detectd_total[5m]) > 0"
    )
    assert unknown_metrics(rule_exprs(broken)) == [
        "AuthserverRefreshTokenTheft: authserver_refresh_reuse_detectd_total"
    ]


def test_every_rule_has_a_severity_and_the_theft_alert_pages_only_on_earlier_tokens():
    rules = {
        rule["alert"]: rule
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    for wanted in (
        "AuthserverRefreshTokenTheft",
        "AuthserverSignInFailureRateHigh",
        "AuthserverAccountLockoutsHigh",
        "AuthserverServerErrors",
        "AuthserverUnavailable503",
        "AuthserverSigningKeyTooOld",
        "AuthserverJwksErrors",
        "AuthserverNotReady",
    ):
        assert wanted in rules
    paging_on_reuse = [
        rule
        for rule in rules.values()
        if "refresh_reuse_detected" in rule["expr"] and rule["labels"]["severity"] == "page"
    ]
    assert [rule["alert"] for rule in paging_on_reuse] == ["AuthserverRefreshTokenTheft"]
    assert 'replayed="earlier"' in paging_on_reuse[0]["expr"]


def promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return tool


def test_rules_pass_promtool_check():
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


A = 'job="authserver",instance="a:8000"'
HTTP = "authserver_http_request_duration_seconds_count"


def http(route: str, method: str, status: int) -> str:
    return f'{HTTP}{{{A},route="{route}",method="{method}",status="{status}"}}'


# (alert, input series {series: values}, evaluation time, expected to fire?)
CASES = [
    ("AuthserverRefreshTokenTheft", {
        f'authserver_refresh_reuse_detected_total{{{A},replayed="earlier"}}': "0 0 1 1 1",
    }, "4m", True),
    # Just-spent tokens presented again (lost responses) never page as theft.
    ("AuthserverRefreshTokenTheft", {
        f'authserver_refresh_reuse_detected_total{{{A},replayed="earlier"}}': "0x10",
        f'authserver_refresh_reuse_detected_total{{{A},replayed="last_spent"}}': "0+5x10",
    }, "10m", False),
    ("AuthserverRefreshResponsesLost", {
        f'authserver_refresh_reuse_detected_total{{{A},replayed="last_spent"}}': "0+1x120",
    }, "100m", True),
    ("AuthserverRefreshResponsesLost", {
        f'authserver_refresh_reuse_detected_total{{{A},replayed="last_spent"}}': "0+0.1x120",
    }, "100m", False),
    ("AuthserverSignInFailureRateHigh", {
        f'authserver_logins_total{{{A},outcome="failed"}}': "0+120x40",
        f'authserver_logins_total{{{A},outcome="succeeded"}}': "0+30x40",
    }, "30m", True),
    # Few sign-ins: two failures of three are no attack.
    ("AuthserverSignInFailureRateHigh", {
        f'authserver_logins_total{{{A},outcome="failed"}}': "0+2x40",
        f'authserver_logins_total{{{A},outcome="succeeded"}}': "0+1x40",
    }, "30m", False),
    ("AuthserverAccountLockoutsHigh", {
        f"authserver_account_lockouts_total{{{A}}}": "0+2x20",
    }, "15m", True),
    ("AuthserverAccountLockoutsHigh", {
        f"authserver_account_lockouts_total{{{A}}}": "0+0.2x20",
    }, "15m", False),
    ("AuthserverServerErrors", {
        http("token", "POST", 500): "0+60x20",
        http("token", "POST", 200): "0+600x20",
    }, "15m", True),
    # 503s are the next alert's, not this one's.
    ("AuthserverServerErrors", {
        http("token", "POST", 503): "0+600x20",
        http("token", "POST", 200): "0+600x20",
    }, "15m", False),
    ("AuthserverUnavailable503", {
        http("token", "POST", 503): "0+600x20",
        http("token", "POST", 200): "0+600x20",
    }, "15m", True),
    ("AuthserverJwksErrors", {
        http("jwks", "GET", 503): "0+10x20",
    }, "15m", True),
    ("AuthserverJwksErrors", {
        http("jwks", "GET", 200): "0+100x20",
        http("jwks", "GET", 304): "0+100x20",
    }, "15m", False),
    ("AuthserverCannotSign", {f"authserver_signing_key_ready{{{A}}}": "1 1 0 0 0 0 0"}, "6m", True),
    ("AuthserverCannotSign", {f"authserver_signing_key_ready{{{A}}}": "1x10"}, "6m", False),
    ("AuthserverSigningKeyTooOld", {
        f"authserver_signing_key_active_age_seconds{{{A}}}": f"{93 * 86400}+60x90",
    }, "80m", True),
    ("AuthserverSigningKeyTooOld", {
        f"authserver_signing_key_active_age_seconds{{{A}}}": f"{30 * 86400}+60x90",
    }, "80m", False),
    ("AuthserverInstanceDown", {f"up{{{A}}}": "1 0 0 0 0"}, "4m", True),
    ("AuthserverMailNotDelivered", {
        f"authserver_mail_outbox_oldest_pending_age_seconds{{{A}}}": "600+60x20",
    }, "15m", True),
    # Mail that goes out within a minute or two never pages.
    ("AuthserverMailNotDelivered", {
        f"authserver_mail_outbox_oldest_pending_age_seconds{{{A}}}": "0 30 90 0 45 0 0 60 0 0x12",
    }, "15m", False),
    ("AuthserverNotReady", {
        'probe_success{job="authserver-readyz",instance="https://a:8000/readyz"}': "1 0 0 0 0",
    }, "4m", True),
]  # fmt: skip


def test_each_alert_fires_on_what_it_is_for_and_not_otherwise(tmp_path):
    tool = promtool()
    rules = yaml.safe_load(RULES.read_text())
    # Annotations are templates over the value; promtool compares them exactly, so the copy
    # under test has none (`promtool check rules` above checks the templates).
    names = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
            names.add(rule["alert"])
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    severity = {
        rule["alert"]: rule["labels"]["severity"]
        for group in rules["groups"]
        for rule in group["rules"]
    }
    tests = []
    for alert, series, at, fires in CASES:
        assert alert in names
        labels = {"severity": severity[alert], "job": "authserver"}
        if alert in {"AuthserverCannotSign", "AuthserverInstanceDown"}:
            labels["instance"] = "a:8000"
        if alert == "AuthserverNotReady":
            labels = {
                **labels,
                "job": "authserver-readyz",
                "instance": "https://a:8000/readyz",
            }
        if alert == "AuthserverInstanceDown":
            labels = {**labels, "job": "authserver", "instance": "a:8000"}
        tests.append(
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": [
                    {
                        "eval_time": at,
                        "alertname": alert,
                        "exp_alerts": [{"exp_labels": labels}] if fires else [],
                    }
                ],
            }
        )
    # Every alert has a case where it fires.
    assert {alert for alert, _, _, fires in CASES if fires} == names
    spec = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(spec))
    result = subprocess.run(
        [tool, "test", "rules", "tests.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# The Grafana dashboard fields this file uses (a subset of Grafana's dashboard model).
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["title", "uid", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "schemaVersion": {"type": "integer", "minimum": 30},
        "time": {
            "type": "object",
            "required": ["from", "to"],
            "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
        },
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "type"],
                        "properties": {
                            "type": {"enum": ["datasource", "query", "custom", "constant"]}
                        },
                    },
                }
            },
        },
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos"],
                "properties": {
                    "id": {"type": "integer"},
                    "type": {"enum": ["row", "timeseries", "stat", "gauge", "table", "text"]},
                    "title": {"type": "string", "minLength": 1},
                    "gridPos": {
                        "type": "object",
                        "required": ["x", "y", "w", "h"],
                        "properties": {
                            "x": {"type": "integer", "minimum": 0, "maximum": 23},
                            "y": {"type": "integer", "minimum": 0},
                            "w": {"type": "integer", "minimum": 1, "maximum": 24},
                            "h": {"type": "integer", "minimum": 1},
                        },
                    },
                    "targets": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["refId", "expr"],
                            "properties": {"expr": {"type": "string", "minLength": 1}},
                        },
                    },
                },
                "if": {"properties": {"type": {"not": {"const": "row"}}}},
                "then": {"required": ["targets", "datasource"]},
            },
        },
    },
}


def dashboard_problems(dashboard: dict) -> list[str]:
    problems = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in jsonschema.Draft202012Validator(DASHBOARD_SCHEMA).iter_errors(dashboard)
    ]
    ids = [panel["id"] for panel in dashboard.get("panels", []) if "id" in panel]
    if len(ids) != len(set(ids)):
        problems.append("panel ids repeat")
    exprs = [
        (panel.get("title", "?"), target.get("expr", ""))
        for panel in dashboard.get("panels", [])
        for target in panel.get("targets", [])
    ]
    problems += unknown_metrics(exprs)
    for panel in dashboard.get("panels", []):
        grid = panel.get("gridPos", {})
        if grid.get("x", 0) + grid.get("w", 0) > 24:
            problems.append(f"{panel.get('title')}: wider than the 24-column grid")
    return problems


def test_dashboard_matches_the_schema_and_names_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard_problems(dashboard) == []
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    shown = set().union(*(metric_names(t["expr"]) for p in panels for t in p["targets"]))
    # Every metric authserver exports is on the dashboard.
    bases = {re.sub(r"_(total|bucket|count|sum|created)$", "", m) for m in exported_metrics()}
    shown_bases = {re.sub(r"_(total|bucket|count|sum)$", "", m) for m in shown}
    assert bases - shown_bases == set()
    # The checks catch a misspelt metric, a missing field and a panel off the grid.
    broken = copy.deepcopy(dashboard)
    broken["panels"][1]["targets"][0]["expr"] = "rate(authserver_logins_totl[5m])"
    del broken["panels"][2]["gridPos"]
    broken["panels"][3]["gridPos"]["x"] = 20
    problems = "\n".join(dashboard_problems(broken))
    assert "authserver_logins_totl" in problems
    assert "'gridPos' is a required property" in problems
    assert "wider than the 24-column grid" in problems
