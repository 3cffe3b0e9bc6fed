"""How a project tests its workflows with the orchestrator's pytest plugin (enabled in conftest.py)."""

from pathlib import Path

WORKFLOW = Path(__file__).parent / "workflows" / "checkout.yaml"


def test_rehearsed_with_scripted_outcomes(orchestrator_rehearse):
    run = orchestrator_rehearse(WORKFLOW, {"prices": [2.5, 4]}, total=6.5, receipt="Total: 6.5")
    assert run.status == "succeeded"
    assert run.sequence == ["total", "receipt"]
    assert run.output == {"receipt": "Total: 6.5"}


def test_a_failing_total_is_retried_once(orchestrator_rehearse):
    run = orchestrator_rehearse(WORKFLOW, {"prices": [1]}, total=[RuntimeError("prices unavailable"), 1.0])
    assert run.status == "succeeded"
    assert [(e["task"], e["attempt"], e["status"]) for e in run.executions][:2] == [
        ("total", 1, "failed"), ("total", 2, "succeeded")]


def test_a_rehearsal_file(orchestrator_rehearse):
    report = orchestrator_rehearse.cases(Path(__file__).parent / "checkout.rehearsal.yaml")
    assert report.totals()["strict"]["passed"] == 1


def test_for_real_on_an_in_process_worker(orchestrator_worker):
    summary = orchestrator_worker.run("checkout", {"prices": [2.5, 4, 0.25]}, timeout=30)
    assert summary["status"] == "succeeded", summary["error"]
    assert summary["output"] == {"receipt": "Total: 6.75"}
    assert [t["name"] for t in summary["tasks"]] == ["total", "receipt"]
