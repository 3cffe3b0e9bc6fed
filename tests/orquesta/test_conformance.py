"""Orquesta's own conducting suite, replayed: /work/shared/conformance/orquesta/cases.json."""

from pathlib import Path

import pytest

from orchestrator.cases import LEVELS, rehearse_cases
from orchestrator.cli_rehearse import read_cases

CASES = Path("/work/shared/conformance/orquesta/cases.json")

pytestmark = pytest.mark.skipif(not CASES.is_file(), reason=f"the Orquesta conformance file {CASES} is not present")


@pytest.fixture(scope="module")
def report():
    return rehearse_cases(read_cases(CASES), str(CASES))


def test_strict_pass_rate_is_at_least_95_percent(report):
    failures = [f"{c.name}: {'; '.join(c.diffs['strict'])}" for c in report.failures("strict")]
    rate = report.rate("strict")
    assert rate >= 0.95, f"strict pass rate {rate:.1%}; failing:\n" + "\n".join(failures)


def test_every_level_is_reported(report):
    totals = report.totals()
    assert set(totals) == set(LEVELS)
    assert all(t["passed"] + t["failed"] == len(report.cases) for t in totals.values())
    assert len(report.cases) == 68
    # a case passing strictly passes the looser levels too
    for case in report.cases:
        if case.passed["strict"]:
            assert case.passed["names"] and case.passed["outcome"], case.name


def test_the_report_is_json_ready(report):
    import json

    data = json.loads(json.dumps(report.to_dict(), default=str))
    assert {c["format"] for c in data["cases"]} == {"orquesta"}
