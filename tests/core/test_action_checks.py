"""Action checks at validation, the same for both formats: unknown actions (with the
`--no-check-actions` escape) and a `core.ask` schema written in the file that is not a JSON Schema."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.core.errors import WorkflowInvalid
from orchestrator.registry import compile_workflow

ROOT = Path(__file__).resolve().parents[2]
KNOWN = {"core.local", "core.noop", "core.ask", "core.echo"}

ORQUESTA_TYPO = """\
version: 1.0
tasks:
  t1:
    action: core.lcoal cmd="echo hi"
    next:
      - do: t2
  t2:
    action: core.local
    input:
      cmd: echo there
  t3:
    action: <% ctx().which %>
input:
  - which
"""

NATIVE_TYPO = """\
version: "1.0"
tasks:
  - name: a
    action: core.lcoal
  - name: b
    action: core.noop
"""


def problems(text: str, **kwargs) -> list[str]:
    with pytest.raises(WorkflowInvalid) as exc:
        compile_workflow(text, "wf.yaml", "wf", **kwargs)
    return exc.value.lines()


@pytest.mark.parametrize("text, line", [(ORQUESTA_TYPO, "wf.yaml:4:5: task 't1': unknown action 'core.lcoal'"),
                                        (NATIVE_TYPO, "wf.yaml:4:5: task 'a': unknown action 'core.lcoal'")])
def test_unknown_action_found_in_both_formats(text, line):
    assert problems(text, action_exists=KNOWN.__contains__) == [line]
    compile_workflow(text, "wf.yaml", "wf")       # without the check (cached parse): valid
    assert problems(text, action_exists=KNOWN.__contains__) == [line]   # the check runs on every call


def test_an_action_chosen_by_an_expression_is_not_looked_up():
    text = ORQUESTA_TYPO.replace("core.lcoal", "core.local")
    workflow = compile_workflow(text, "wf.yaml", "wf", action_exists=KNOWN.__contains__)
    assert workflow.actions == {"core.local"}
    assert workflow.spec.tasks["t3"].action == "<% ctx().which %>"


@pytest.mark.parametrize("text", [
    """\
    version: "1.0"
    tasks:
      - name: approve
        action: core.ask
        input:
          schema: {type: object, properties: {ok: {type: bool}}}
    """,
    """\
    version: 1.0
    tasks:
      approve:
        action: core.ask
        input:
          schema: {type: object, properties: {ok: {type: bool}}}
    """,
])
def test_a_bad_static_ask_schema_is_found_in_both_formats(text):
    [line] = problems(textwrap.dedent(text))
    assert line.startswith("wf.yaml:6:7: task 'approve': core.ask schema is not a valid JSON Schema: ")
    assert "'bool' is not valid" in line


def test_ask_schema_checks():
    lines = problems(textwrap.dedent("""\
        version: 1.0
        input:
          - s
        tasks:
          inline:
            action: core.ask schema='{"type":7}'
          text:
            action: core.ask
            input:
              schema: not a schema
          ref:
            action: core.ask
            input:
              schema: {$ref: "http://example.com/s.json"}
          rendered:
            action: core.ask
            input:
              schema: <% ctx(s) %>
          fine:
            action: core.ask
            input:
              schema: {type: object, required: [ok]}
        """))
    assert [line.split(": core.ask schema is not a valid JSON Schema: ") for line in lines] == [
        ["wf.yaml:6:5: task 'inline'", "7 is not valid under any of the given schemas"],
        ["wf.yaml:10:7: task 'text'", "it must be a mapping"],
        ["wf.yaml:14:7: task 'ref'", "only local $ref ('#/...') is allowed"],
    ]   # `rendered` is checked when it is answered; `fine` is fine


def cli(*args: str, cwd: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_validate_command_checks_orquesta_actions_unless_told_not_to(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(ORQUESTA_TYPO)
    result = cli("validate", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"{path}:4:5: task 't1': unknown action 'core.lcoal'"
    result = cli("validate", "--no-check-actions", str(path), cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"{path}: ok"


def test_stackstorms_required_true_on_a_property_is_accepted():
    """StackStorm's inquiry schemas (draft 4 with draft 3's `required: true` on a property)."""
    from orchestrator.core.schemas import standard_schema

    compile_workflow(textwrap.dedent("""\
        version: 1.0
        tasks:
          approve:
            action: core.ask
            input:
              schema:
                type: object
                properties:
                  approved: {type: boolean, required: true}
                  note: {type: string, required: false}
        """), "wf.yaml", "wf")
    assert standard_schema({"type": "object", "required": ["a"], "properties": {
        "a": {"type": "string"}, "b": {"type": "object", "required": True, "properties": {"c": {"required": True}}},
        "d": {"required": False}}}) == {"type": "object", "required": ["a", "b"], "properties": {
            "a": {"type": "string"}, "b": {"type": "object", "required": ["c"], "properties": {"c": {}}}, "d": {}}}
