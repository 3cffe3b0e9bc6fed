"""Rehearsal case files: run workflows against scripted outcomes and judge what they did.

A file (JSON or YAML) holds ``cases`` (or is one case, or a list of cases). Each case names a
workflow (``workflow_yaml`` inline, or ``workflow`` as a path relative to the file, which the
shell reads: cli_rehearse.read_cases puts its text in ``workflow_yaml``), its
``inputs``/``params``, a ``script`` of outcomes and what is ``expected``. The workflow's format
decides the runner: Orquesta's native format runs in Orquesta's wave model (rehearse.py); our
own format runs through ``orchestrator.engine.rehearsal`` (calls completed in dispatch order).

Every case is judged at three levels:

- strict: the sequence of executions with routes (``name__rN``; no suffix means route 0), plus
  the asserted `routes` and `term_tasks` (in any order);
- names: the sequence with route suffixes stripped;
- outcome: the same executions in any order;

and at every level the asserted `workflow_status`, `output`, `errors` (Orquesta's error list) and
`error` (a substring of the run's error message). A case with ``rerun`` continues the final
state of ``after_case`` and reruns ``rerun_tasks`` (null: every terminal task that failed).

Pure: the cases come in as data, nothing here reads a file.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .core.errors import ParametersInvalid, WorkflowInvalid
from .orquesta.rehearse import Script, WaveRun, rehearse_waves
from .formats import detect_orquesta
from .orquesta.workflow import load

LEVELS = ("strict", "names", "outcome")


class CaseFileError(ValueError):
    """A rehearsal file that cannot be read or has no cases."""


@dataclass
class CaseResult:
    """One case's verdict per level, the differences found, and what the run did."""

    name: str
    format: str
    passed: dict[str, bool] = field(default_factory=dict)
    diffs: dict[str, list[str]] = field(default_factory=dict)
    actual: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    source: str
    cases: list[CaseResult] = field(default_factory=list)

    def totals(self) -> dict[str, dict[str, int]]:
        return {level: {"passed": sum(c.passed.get(level, False) for c in self.cases),
                        "failed": sum(not c.passed.get(level, False) for c in self.cases)} for level in LEVELS}

    def rate(self, level: str) -> float:
        return self.totals()[level]["passed"] / len(self.cases) if self.cases else 1.0

    def failures(self, level: str = "strict") -> list[CaseResult]:
        return [c for c in self.cases if not c.passed.get(level, False)]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "totals": self.totals(), "cases": [asdict(c) for c in self.cases]}


def rehearse_cases(cases: list[dict[str, Any]], source: str) -> Report:
    """Run and judge every case (as `parse_cases` returns them); `source` names the file."""
    runner = _Runner({c["name"]: c for c in cases})
    return Report(source, [runner.judge(case) for case in cases])


def parse_cases(text: str, source: str, as_json: bool) -> list[dict[str, Any]]:
    """The cases of a rehearsal file's text (JSON, else YAML); CaseFileError names the file."""
    try:
        data = json.loads(text) if as_json else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise CaseFileError(f"{source}: not valid {'JSON' if as_json else 'YAML'}: {exc}") from None
    if isinstance(data, dict) and "cases" in data:
        data = data["cases"]
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data or not all(isinstance(c, dict) for c in data):
        raise CaseFileError(f"{source}: expected `cases`, a list of rehearsal cases")
    cases = []
    for i, case in enumerate(data):
        case = dict(case)
        case.setdefault("name", f"case {i + 1}")
        cases.append(case)
    return cases


class _Runner:
    def __init__(self, by_name: dict[str, dict[str, Any]]):
        self.by_name = by_name
        self.final: dict[str, WaveRun] = {}
        self.running: set[str] = set()

    def judge(self, case: dict[str, Any]) -> CaseResult:
        result = CaseResult(case["name"], "unknown")
        try:
            result.format, result.actual = self.run(case)
        except (WorkflowInvalid, ParametersInvalid, CaseFileError, ValueError, TypeError, KeyError) as exc:
            message = "; ".join(exc.lines()) if isinstance(exc, WorkflowInvalid) else str(exc)
            result.passed = {level: False for level in LEVELS}
            result.diffs = {level: [f"could not run: {message}"] for level in LEVELS}
            return result
        expected = case.get("expected") or {}
        for level in LEVELS:
            diffs = _judge(level, expected, result.actual)
            result.passed[level] = not diffs
            result.diffs[level] = diffs
        return result

    def workflow_text(self, case: dict[str, Any]) -> tuple[str, str]:
        if case.get("workflow_yaml"):
            return case["workflow_yaml"], case.get("workflow_source") or f"{case['name']} (workflow_yaml)"
        ref = case.get("workflow")
        if isinstance(ref, dict):
            return yaml.safe_dump(ref, sort_keys=False), f"{case['name']} (workflow)"
        raise CaseFileError(f"case '{case['name']}': needs workflow_yaml or workflow (a path, or the workflow)")

    def run(self, case: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        text, source = self.workflow_text(case)
        inputs = case.get("inputs", case.get("params")) or {}
        if detect_orquesta(text):
            return "orquesta", self.run_orquesta(case, text, source, inputs)
        if case.get("rerun"):
            raise CaseFileError(f"case '{case['name']}': rerun stages are for Orquesta workflows only")
        return "native", _run_native(text, source, inputs, case.get("script"))

    def run_orquesta(self, case: dict[str, Any], text: str, source: str, inputs: dict[str, Any]) -> dict[str, Any]:
        workflow = load(text, source)
        rerun = case.get("rerun")
        if rerun:
            previous = self.previous_state(case, rerun.get("after_case"))
            run = rehearse_waves(workflow, inputs, case.get("script"), previous=previous,
                                 rerun=rerun.get("rerun_tasks"), is_rerun=True)
        else:
            run = rehearse_waves(workflow, inputs, case.get("script"))
        self.final[case["name"]] = run
        state = run.state
        return {"task_sequence": [_label(n, r) for n, r in run.sequence], "routes": state.routes,
                "term_tasks": [_label(r["id"], r["route"]) for r in state.terminal()],
                "workflow_status": state.status, "output": state.output, "errors": state.errors,
                "error": run.error}

    def previous_state(self, case: dict[str, Any], name: str | None) -> WaveRun:
        if name not in self.final:
            earlier = self.by_name.get(name or "")
            if earlier is None:
                raise CaseFileError(f"case '{case['name']}': after_case {name!r} is not in this file")
            if name in self.running:
                raise CaseFileError(f"case '{case['name']}': rerun stages form a loop at {name!r}")
            self.running.add(name)
            try:
                text, source = self.workflow_text(earlier)
                self.run_orquesta(earlier, text, source, earlier.get("inputs", earlier.get("params")) or {})
            finally:
                self.running.discard(name)
        return self.final[name]


def _run_native(text: str, source: str, params: dict[str, Any], script: list[dict[str, Any]] | None) -> dict[str, Any]:
    from .engine.rehearsal import rehearse
    from .engine.validate import load_workflow

    workflow = load_workflow(text, source, default_name=Path(source).stem)
    outcomes = Script(script)
    occurrences: dict[str, int] = {}

    def outcome(task: str, payload: dict[str, Any], attempt: int, item: int | None) -> tuple[str, Any]:
        if attempt == 1 and item in (None, 0):
            occurrences[task] = occurrences.get(task, 0) + 1
        entry = outcomes.take(task, occurrences.get(task, 1) - 1, item, attempt) or {}
        status = entry.get("status", "succeeded")
        value = entry.get("error", entry.get("result")) if status != "succeeded" else entry.get("result")
        return status, value

    run = rehearse(workflow, params, outcome)
    return {"task_sequence": list(run.sequence), "workflow_status": run.status, "output": run.output,
            "error": run.error}


def _label(name: str, route: int) -> str:
    return f"{name}__r{route}"


def _split(label: str) -> tuple[str, int]:
    name, sep, route = label.rpartition("__r")
    if sep and route.isdigit():
        return name, int(route)
    return label, 0


def _show(items: list[Any]) -> str:
    return "[" + ", ".join(str(i) for i in items) + "]"


def _sequence_diff(what: str, expected: list[str], actual: list[str]) -> str | None:
    if expected == actual:
        return None
    for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
        if e != a:
            where = f"first difference at #{i + 1}: expected {e}, got {a}"
            break
    else:
        longer, n = (expected, "missing") if len(expected) > len(actual) else (actual, "extra")
        where = f"{n} from #{min(len(expected), len(actual)) + 1}: {_show(longer[min(len(expected), len(actual)):])}"
    return f"{what}: {where} (expected {_show(expected)}, got {_show(actual)})"


def _judge(level: str, expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    diffs: list[str] = []
    actual_seq = [_split(x) for x in actual.get("task_sequence", [])]
    if "task_sequence" in expected or "task_sequence_names" in expected:
        expected_seq = [_split(x) for x in expected.get("task_sequence") or []]
        expected_names = expected.get("task_sequence_names") or [n for n, _ in expected_seq]
        if level == "strict" and "task_sequence" in expected:
            diff = _sequence_diff("task_sequence", [_label(*x) for x in expected_seq], [_label(*x) for x in actual_seq])
        elif level in ("strict", "names"):
            diff = _sequence_diff("task names", expected_names, [n for n, _ in actual_seq])
        else:
            missing = Counter(expected_names) - Counter(n for n, _ in actual_seq)
            extra = Counter(n for n, _ in actual_seq) - Counter(expected_names)
            diff = None if not missing and not extra else (
                f"executions: missing {dict(missing) or '{}'}, extra {dict(extra) or '{}'}")
        if diff:
            diffs.append(diff)
    if level == "strict":
        if "routes" in expected and "routes" in actual and expected["routes"] != actual["routes"]:
            diffs.append(f"routes: expected {expected['routes']}, got {actual['routes']}")
        if expected.get("term_tasks") is not None and "term_tasks" in actual:
            want = sorted(_label(*_split(t)) for t in expected["term_tasks"])
            if want != sorted(actual["term_tasks"]):
                diffs.append(f"term_tasks: expected {_show(want)}, got {_show(sorted(actual['term_tasks']))}")
    if "workflow_status" in expected and expected["workflow_status"] != actual.get("workflow_status"):
        diffs.append(f"workflow_status: expected {expected['workflow_status']}, got {actual.get('workflow_status')}")
    if "output" in expected and expected["output"] != actual.get("output"):
        diffs.append(f"output: expected {json.dumps(expected['output'])}, got {json.dumps(actual.get('output'))}")
    if level != "outcome" and expected.get("errors") is not None and expected["errors"] != actual.get("errors"):
        diffs.append(f"errors: expected {json.dumps(expected['errors'])}, got {json.dumps(actual.get('errors'))}")
    if expected.get("error") and expected["error"] not in (actual.get("error") or ""):
        diffs.append(f"error: expected it to contain {expected['error']!r}, got {actual.get('error')!r}")
    return diffs
