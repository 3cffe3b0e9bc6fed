"""Every problem in a workflow file is reported at once, each with file:line:column."""

import textwrap

import pytest

from orchestrator.core.errors import WorkflowInvalid
from orchestrator.engine.validate import load_workflow


def problems(text: str, **kwargs) -> list[str]:
    with pytest.raises(WorkflowInvalid) as exc:
        load_workflow(textwrap.dedent(text).lstrip("\n"), "flow.yaml", **kwargs)
    return exc.value.lines()


def test_not_yaml_gives_one_line_with_place():
    assert problems("tasks: [a, b\n") == ["flow.yaml:2:1: not valid YAML: did not find expected ',' or ']'"]


@pytest.mark.parametrize("text, kind", [("", "empty"), ("- a\n- b\n", "a list"), ("just text\n", "a str")])
def test_not_a_mapping(text, kind):
    [line] = problems(text)
    assert line.startswith("flow.yaml:1:1: a workflow file must be a mapping") and kind in line


def test_schema_and_graph_problems_all_at_once():
    lines = problems("""
        version: "1.0"
        colour: blue
        tasks:
          - name: a
            action: ext.missing
            input: {x: "{{ broken( }}"}
            next: [{do: ghost}]
          - name: b
            actoin: core.echo
          - {name: c, action: core.echo, join: all, next: [{do: b}]}
    """, action_exists=lambda name: name.startswith("core."))
    assert lines == [
        "flow.yaml:2:1: unknown key 'colour'",
        "flow.yaml:5:5: task 'a': unknown action 'ext.missing'",
        "flow.yaml:6:5: tasks[0].input: bad template '{{ broken( }}': syntax error: unexpected 'end of template'",
        "flow.yaml:7:13: task 'a': transition to unknown task 'ghost'",
        "flow.yaml:8:5: missing required key 'action' in tasks[1]",
        "flow.yaml:9:5: unknown key 'actoin' in tasks[1]",
        "flow.yaml:10:34: task 'c': join needs at least two inbound tasks, it has 0",
    ]


def test_unknown_key_duplicate_task_and_missing_target_together():
    """The language spec: all problems at once, whichever kind comes first."""
    text = """
        version: "1.0"
        colour: blue
        tasks:
          - name: a
            action: core.noop
            next: [{do: ghost}]
          - name: a
            action: core.noop
          - name: b
            action: core.noop
            shape: round
            next: [{do: phantom}]
          - name: b
            action: core.noop
    """
    assert problems(text) == [
        "flow.yaml:2:1: unknown key 'colour'",
        "flow.yaml:6:13: task 'a': transition to unknown task 'ghost'",
        "flow.yaml:7:5: duplicate task name 'a' (first at tasks[0])",
        "flow.yaml:11:5: unknown key 'shape' in tasks[2]",
        "flow.yaml:12:13: task 'b': transition to unknown task 'phantom'",
        "flow.yaml:13:5: duplicate task name 'b' (first at tasks[2])",
    ]
    # Without the unknown keys the same graph problems are reported, and nothing else.
    clean = text.replace("        colour: blue\n", "").replace("            shape: round\n", "")
    assert [line.split(": ", 1)[1] for line in problems(clean)] == [
        "task 'a': transition to unknown task 'ghost'",
        "duplicate task name 'a' (first at tasks[0])",
        "task 'b': transition to unknown task 'phantom'",
        "duplicate task name 'b' (first at tasks[2])",
    ]


def test_a_task_that_fails_the_schema_keeps_its_other_checks():
    lines = problems("""
        version: "1.0"
        tasks:
          - name: a
            action: core.noop
            retry: {count: -1}
            input: {x: "{{ broken( }}"}
            next: [{do: ghost}]
          - name: fail
            timeout: soon
            action: core.noop
    """, action_exists=lambda name: False)
    joined = "\n".join(lines)
    assert "tasks[0].retry.count: Input should be greater than or equal to 0" in joined
    assert "task 'a': unknown action 'core.noop'" in joined
    assert "tasks[0].input: bad template" in joined
    assert "task 'a': transition to unknown task 'ghost'" in joined
    assert "tasks[1].timeout: Input should be a valid number" in joined
    assert "task name 'fail' is reserved" in joined


def test_a_missing_action_is_not_looked_up_and_a_broken_transition_skips_reachability():
    lines = problems("""
        version: "1.0"
        tasks:
          - name: a
            next: {do: b}
          - name: b
            action: core.noop
    """, action_exists=lambda name: name == "core.noop")
    assert lines == [
        "flow.yaml:3:5: missing required key 'action' in tasks[0]",
        "flow.yaml:4:5: tasks[0].next: Input should be a valid list",
    ]   # b is not reported unreachable: the transition into it could not be read


def test_graph_problems():
    lines = problems("""
        version: "1.0"
        tasks:
          - {name: a, action: x, next: [{do: [b, c]}]}
          - {name: b, action: x, join: all}
          - {name: c, action: x}
          - {name: c, action: x}
          - {name: fail, action: x}
          - {name: island, action: x, next: [{do: island}]}
          - {name: j, action: x, join: 3, next: [{do: j}]}
    """)
    joined = "\n".join(lines)
    assert "flow.yaml:4:26: task 'b': join needs at least two inbound tasks, it has 1" in joined
    assert "flow.yaml:6:6: duplicate task name 'c' (first at tasks[2])" in joined
    assert "task name 'fail' is reserved" in joined
    assert "task 'island' is unreachable from the entry tasks" in joined
    assert "task 'j': join needs at least two inbound tasks" in joined


def test_no_entry_task():
    lines = problems("""
        version: "1.0"
        tasks:
          - {name: a, action: x, next: [{do: b}]}
          - {name: b, action: x, next: [{do: a}]}
    """)
    assert lines == ["flow.yaml:2:1: no entry task: every task is the target of a transition"]


def test_bad_parameter_schema_and_default():
    lines = problems("""
        version: "1.0"
        parameters:
          n: {type: integer, default: seven}
          m: {type: float}
          k: {type: array, items: {type: 12}}
        tasks:
          - {name: a, action: x}
    """)
    joined = "\n".join(lines)
    assert "parameters.m.type: Input should be 'string', 'integer', 'number', 'boolean', 'array' or 'object'" in joined
    assert "flow.yaml:3:22: parameter 'n': default 'seven' is not of type 'integer'" in joined
    assert "parameter 'k': bad items schema" in joined


def test_wrong_types_and_values():
    joined = "\n".join(problems("""
        version: 2
        tasks:
          - name: a
            action: x
            retry: {count: -1, backoff: sideways}
            timeout: 0
            join: sometimes
            next: {do: b}
    """))
    assert "version: unsupported version 2" in joined
    assert "tasks[0].retry.count: Input should be greater than or equal to 0" in joined
    assert "tasks[0].retry.backoff: Input should be 'constant', 'linear' or 'exponential'" in joined
    assert "tasks[0].timeout: Input should be greater than 0" in joined
    assert "tasks[0].join: must be 'all' or a positive integer" in joined
    assert "tasks[0].next: Input should be a valid list" in joined


def test_duplicate_yaml_keys_are_errors():
    assert problems("version: '1.0'\nversion: '1.0'\ntasks: []\n") == ["flow.yaml:2:1: duplicate key 'version'"]


def test_valid_file_with_legacy_fields_and_comma_do():
    w = load_workflow(textwrap.dedent("""
        version: 1.0
        tasks:
          - {name: a, action: x, on_success: "b, c", on_failure: d}
          - {name: b, action: x}
          - {name: c, action: x, next: [{do: "d"}]}
          - {name: d, action: x}
    """), "ok.yaml", default_name="ok")
    assert w.name == "ok"
    assert w.graph.entry == ("a",)
    assert w.graph.nodes["d"].inbound == {"a", "c"}
