"""The Orquesta native format: parsing, inline parameters and validation with places."""

import textwrap

import pytest
import yaml

from orchestrator.core.errors import WorkflowInvalid
from orchestrator.orquesta import is_orquesta, load
from orchestrator.orquesta.inline import InlineError, parse_pairs, split_action


def problems(text: str) -> list[str]:
    with pytest.raises(WorkflowInvalid) as exc:
        load(textwrap.dedent(text), "wf.yaml")
    return exc.value.lines()


def test_full_workflow_parses():
    workflow = load(textwrap.dedent("""
        version: 1.0
        description: all the keys
        input:
          - which
          - count: 2
        vars:
          - xs: [1, 2]
        tasks:
          t1:
            action: core.echo message="hi there" n=3 ok=true none=null
            next:
              - when: <% succeeded() %>
                publish: a=<% result() %> b="text"
                do: t2, t3
              - when: <% failed() %>
                publish:
                  - err: <% result() %>
          t2:
            action: core.noop
            input: {x: "{{ ctx().count }}"}
            retry: {count: 2, delay: 1, when: <% failed() %>}
            delay: <% ctx(count) %>
          t3:
            join: all
            with:
              items: a, b in <% zip(ctx(xs), ctx(xs)) %>
              concurrency: 2
            action: core.echo message=<% item(a) %>
        output:
          - out: <% ctx().a %>
        """), "wf.yaml")
    spec = workflow.spec
    assert [i.name for i in spec.input] == ["which", "count"]
    assert spec.input[1].default == 2 and spec.input[1].has_default
    t1 = spec.tasks["t1"]
    assert t1.action == "core.echo"
    assert t1.input == {"message": "hi there", "n": 3, "ok": True, "none": None}
    assert t1.next[0].publish == (("a", "<% result() %>"), ("b", "text"))
    assert t1.next[0].do == ("t2", "t3")
    assert t1.next[1].do == ("continue",)       # a missing `do` is `do: continue`
    assert spec.tasks["t2"].retry.count == 2
    assert spec.tasks["t3"].items.keys == ("a", "b")
    assert spec.tasks["t3"].items.concurrency == 2
    assert workflow.name == "wf"


def test_with_shorthand_and_named_item():
    spec = load("version: 1.0\ninput: [xs]\ntasks:\n  t:\n    with: x in <% ctx(xs) %>\n    action: a\n", "w.yaml").spec
    assert spec.tasks["t"].items.expression == "<% ctx(xs) %>"
    assert spec.tasks["t"].items.keys == ("x",)
    spec = load("version: 1.0\ninput: [xs]\ntasks:\n  t:\n    with: '{{ ctx().xs }}'\n    action: a\n", "w.yaml").spec
    assert spec.tasks["t"].items.keys is None


@pytest.mark.parametrize("data, expected", [
    ({"version": 1.0, "tasks": {"a": {}}}, True),
    ({"version": "1.0", "tasks": {"a": {}}}, True),
    ({"version": "1.0", "tasks": [{"name": "a"}]}, False),   # our own format: tasks is a list
    ({"version": 2, "tasks": {"a": {}}}, False),
    ("text", False),
])
def test_is_orquesta(data, expected):
    assert is_orquesta(data) is expected


def test_is_orquesta_on_loaded_yaml():
    assert is_orquesta(yaml.safe_load("version: 1.0\ntasks:\n  a:\n    action: core.noop\n"))


def test_inline_pairs():
    assert parse_pairs('a=1 b=-2.5 c="x y" d=\'z\' e=[1, 2] f=<% ctx(x) %> g={{ y }} h=TRUE i=null') == [
        ("a", 1), ("b", -2.5), ("c", "x y"), ("d", "z"), ("e", [1, 2]), ("f", "<% ctx(x) %>"), ("g", "{{ y }}"),
        ("h", True), ("i", None)]
    assert parse_pairs("j='{\"k\": 1}'") == [("j", {"k": 1})]     # a quoted JSON object is read as JSON
    assert split_action("core.noop") == ("core.noop", None)
    with pytest.raises(InlineError):
        parse_pairs("message=hello world")


def test_unknown_keys_are_reported_with_places():
    lines = problems("""
        version: 1.0
        bogus: 1
        tasks:
          t1:
            action: core.noop
            nxt: []
            next:
              - when: <% succeeded() %>
                go: t2
        """)
    assert "wf.yaml:3:1: workflow: unknown key 'bogus'" in lines[0]
    assert any(line.startswith("wf.yaml:7:5: task 't1': unknown key 'nxt'") for line in lines)
    assert any(line.startswith("wf.yaml:10:9: task 't1': next[0]: unknown key 'go'") for line in lines)


def test_every_problem_at_once():
    lines = problems("""
        version: 1.0
        tasks:
          noop:
            action: core.noop
          t1:
            action: core.echo message=hello world
            join: maybe
            with: <% ctx(xs) %>
            next:
              - do: missing
          t2:
            with: whatever
            retry: {delay: 1}
            input: "{{ x }} <% y %>"
        """)
    text = "\n".join(lines)
    assert "task name 'noop' is reserved" in text
    assert "cannot read 'message=hello world'" in text
    assert "join must be 'all' or a number" in text
    assert "transition to unknown task 'missing'" in text
    assert "with.items must be an expression" in text
    assert "retry needs a count" in text
    assert "multiple types" in text
    assert all(line.startswith("wf.yaml:") for line in lines)


def test_with_items_needs_an_action():
    assert any("action property is required for a with-items task" in line
               for line in problems("version: 1.0\ntasks:\n  t:\n    with: <% ctx(xs) %>\n"))


def test_bad_expression_syntax():
    text = "\n".join(problems("""
        version: 1.0
        tasks:
          t:
            action: core.noop
            next:
              - when: <% succeeded( %>
                publish: x={{ 1 + }}
        """))
    assert "next[0].when: bad expression '<% succeeded( %>'" in text
    assert "publish: bad expression" in text


def test_no_start_task():
    text = "\n".join(problems("""
        version: 1.0
        tasks:
          a:
            action: core.noop
            next: [{do: b}]
          b:
            action: core.noop
            next: [{do: a}]
        """))
    assert "no start task" in text


def test_join_under_nested_splits_is_rejected():
    text = "\n".join(problems("""
        version: 1.0
        tasks:
          t1:
            action: core.noop
            next: [{do: "t2, t3"}]
          t2:
            action: core.noop
            next: [{do: t4}]
          t3:
            action: core.noop
            next: [{do: "t4, t5"}]
          t4:
            action: core.noop
            next: [{do: t6}]
          t5:
            action: core.noop
            next: [{do: t6}]
          t6:
            join: all
            action: core.noop
        """))
    assert "task 't6': the join is unreachable" in text


def test_not_an_orquesta_file():
    assert "not an Orquesta workflow" in problems("version: 1.0\ntasks: []\n")[0]
