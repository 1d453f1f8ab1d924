"""The Prometheus rules: promtool checks them and unit-tests every alert; every alert has a runbook."""

from __future__ import annotations

import re
import subprocess

import yaml
from deploykit import DEPLOY, REPO, tool

RULES = DEPLOY / "prometheus" / "gateway-stats.rules.yaml"
TESTS = DEPLOY / "prometheus" / "gateway-stats.rules.test.yaml"
PROMTOOL_HOW = "Debian package `prometheus`; .ci/run installs it"


def promtool() -> str:
    return tool("promtool", PROMTOOL_HOW, ("/usr/bin/promtool",))


def alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def test_promtool_check_rules() -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    n = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {n} rules found" in out.stdout


def test_promtool_unit_tests_pass_and_cover_every_alert() -> None:
    out = subprocess.run(
        [promtool(), "test", "rules", TESTS.name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=TESTS.parent,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    fired: set[str] = set()
    silent: set[str] = set()
    for t in yaml.safe_load(TESTS.read_text())["tests"]:
        for a in t.get("alert_rule_test", []):
            (fired if a["exp_alerts"] else silent).add(a["alertname"])
    names = {str(a["alert"]) for a in alerts()}
    # every alert is shown to fire on a bad series and to stay silent otherwise
    assert names <= fired, names - fired
    assert names <= silent, names - silent


def test_promtool_unit_tests_can_fail(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A wrong expectation fails the run: the SUCCESS above means something."""
    doc = yaml.safe_load(TESTS.read_text())
    doc["rule_files"] = [str(RULES)]
    for t in doc["tests"]:
        for a in t.get("alert_rule_test", []):
            for e in a["exp_alerts"]:
                e["exp_labels"]["severity"] = "page-me"
    bad = tmp_path / "bad.test.yaml"
    bad.write_text(yaml.safe_dump(doc))
    out = subprocess.run([promtool(), "test", "rules", str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            out.add(text.replace(" ", "-"))
    return out


def test_every_alert_has_summary_and_a_runbook_anchor() -> None:
    anchors = _anchors((REPO / "docs" / "operations.md").read_text())
    for a in alerts():
        ann = a["annotations"]
        assert isinstance(ann, dict)
        assert ann.get("summary") and ann.get("description"), a["alert"]
        assert a["labels"]["severity"] in ("critical", "warning", "info"), a["alert"]  # type: ignore[index]
        url = ann["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md", url
        assert anchor == str(a["alert"]).lower() and anchor in anchors, (url, "missing in docs/operations.md")
