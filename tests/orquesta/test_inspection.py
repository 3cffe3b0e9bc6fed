"""Orquesta's inspection at validation: variables used before they can be set (with places), the
expressions that read them, and dotted variable names."""

import textwrap

import pytest

from orchestrator.core.errors import WorkflowInvalid
from orchestrator.orquesta import load
from orchestrator.orquesta.variables import references


def problems(text: str) -> list[str]:
    with pytest.raises(WorkflowInvalid) as exc:
        load(textwrap.dedent(text), "wf.yaml")
    return exc.value.lines()


def valid(text: str) -> None:
    load(textwrap.dedent(text), "wf.yaml")


@pytest.mark.parametrize("text, names", [
    ("<% ctx().a %>", ["a"]),
    ("<% ctx(a) %>", ["a"]),
    ("<% ctx('a') + ctx(\"b\") %>", ["a", "b"]),
    ("<% ctx()['a.b'] %>", ["a.b"]),
    ("<% ctx().a.b + ctx().c[0] %>", ["a", "c"]),
    ("<% ctx().get(k) %>", []),                  # a method of the context, not a variable
    ("<% ctx() %> <% ctx('mi' + 'ssing') %>", []),  # the whole context; a computed name
    ("<% 'ctx().a' %>", []),                     # text in a string literal
    ("<% $.a %> <% result().a %> <% item(a) %>", []),
    ("{{ ctx().a }} {{ ctx('b') }} {{ ctx(c) }} {{ ctx()['d.e'] }}", ["a", "b", "c", "d.e"]),
    ("{% for x in ctx().xs %}{{ x }}{% endfor %}", ["xs"]),
    ("{{ ctx().get('a') }} {{ ctx().items() }}", []),
    ("<% ctx( %>", []),                          # a syntax error is reported elsewhere
    ({"k <% ctx(a) %>": ["<% ctx(b) %>", 1, None]}, ["a", "b"]),
])
def test_references(text, names):
    assert references(text) == names


def test_inputs_and_vars_see_only_what_comes_before_them():
    lines = problems("""
        version: 1.0
        input:
          - a: <% ctx(b) %>
          - b
          - c: <% ctx(a) %> <% ctx(b) %>
        vars:
          - x: <% ctx(y) %>
          - y: <% ctx(c) %>
          - z: "{{ ctx().x }} {{ ctx().w }}"
        tasks:
          t:
            action: core.noop
        """)
    assert lines == [
        "wf.yaml:4:5: input.a: variable 'b' is referenced before assignment (only earlier inputs are set)",
        "wf.yaml:8:5: vars.x: variable 'y' is referenced before assignment (only inputs and earlier vars are set)",
        "wf.yaml:10:5: vars.z: variable 'w' is referenced before assignment (only inputs and earlier vars are set)",
    ]


EVERY_PATH = "(it is not an input or a var, nor published on every path to this task)"


def test_every_task_field_is_checked_at_its_place():
    lines = problems("""
        version: 1.0
        tasks:
          t:
            delay: <% ctx(d) %>
            with:
              items: x in <% ctx(xs) %>
              concurrency: <% ctx(n) %>
            action: core.echo
            input:
              message: <% ctx(m) %>
            retry:
              count: <% ctx(r) %>
            next:
              - when: <% ctx(w) %>
                publish:
                  - p: <% ctx(q) %>
          u:
            action: core.echo message=<% ctx().inline %>
        """)
    assert [line.split(": variable")[0] for line in lines] == [
        "wf.yaml:5:5: task 't': delay",
        "wf.yaml:7:7: task 't': with.items",
        "wf.yaml:8:7: task 't': with.concurrency",
        "wf.yaml:11:7: task 't': input.message",
        "wf.yaml:13:7: task 't': retry.count",
        "wf.yaml:15:9: task 't': next[0].when",
        "wf.yaml:17:13: task 't': next[0].publish.p",
        "wf.yaml:19:5: task 'u': input.message",       # inline parameters: the action's line
    ]
    assert all(line.endswith(EVERY_PATH) for line in lines)


def test_sequence_and_rolling_publish():
    valid("""
        version: 1.0
        vars:
          - v: 1
        tasks:
          t1:
            action: core.noop
            next:
              - publish: a=1 b=<% ctx(a) %> c=<% ctx(v) %>
                do: t2
          t2:
            action: core.echo message=<% ctx(b) %>
            next:
              - publish:
                  - d: <% ctx().c %>
                  - e: <% ctx().d %>
                do: t3
          t3:
            action: core.echo message=<% ctx(e) %>
        output:
          - out: <% ctx(e) %>
          - again: <% ctx(out) %>
        """)


def test_publish_reaches_only_the_tasks_of_its_own_transition():
    lines = problems("""
        version: 1.0
        tasks:
          t1:
            action: core.noop
            next:
              - when: <% succeeded() %>
                publish: ok=1
                do: t2
              - when: <% failed() %>
                do: t3
              - when: <% ctx(ok) %>
                do: t3
          t2:
            action: core.echo message=<% ctx(ok) %>
          t3:
            action: core.echo message=<% ctx(ok) %>
        """)
    assert lines == [
        f"wf.yaml:12:9: task 't1': next[2].when: variable 'ok' is referenced before assignment {EVERY_PATH}",
        f"wf.yaml:17:5: task 't3': input.message: variable 'ok' is referenced before assignment {EVERY_PATH}",
    ]


def test_a_task_reached_by_several_paths_needs_the_variable_on_every_one():
    text = """
        version: 1.0
        tasks:
          t1:
            action: core.noop
            next:
              - publish: x=1
                do: t3
              - do: t2
          t2:
            action: core.noop
            next:
              - {PUBLISH}do: t3
          t3:
            action: core.echo message=<% ctx(x) %>
        """
    # Orquesta's breadth-first walk visits t3 from t1 first and accepts this; the run then fails
    # on the path through t2. We reject it.
    assert problems(text.replace("{PUBLISH}", "")) == [
        f"wf.yaml:15:5: task 't3': input.message: variable 'x' is referenced before assignment {EVERY_PATH}"]
    valid(text.replace("{PUBLISH}", "publish: x=2\n                "))


def test_a_join_sees_what_any_branch_sets():
    valid("""
        version: 1.0
        tasks:
          a:
            action: core.noop
            next: [{publish: x=1, do: c}]
          b:
            action: core.noop
            next: [{publish: y=1, do: c}]
          c:
            join: all
            action: core.echo message=<% ctx(x) + ctx(y) %>
        """)
    lines = problems("""
        version: 1.0
        tasks:
          a:
            action: core.noop
            next: [{do: c}]
          b:
            action: core.noop
            next: [{do: c}]
          c:
            join: all
            action: core.echo message=<% ctx(x) %>
        """)
    assert lines[0].endswith("variable 'x' is referenced before assignment "
                             "(it is not an input or a var, nor published on any branch of this join)")


def test_a_loop_needs_the_variable_before_its_first_turn():
    text = """
        version: 1.0
        tasks:
          init:
            action: core.noop
            next:
              - {PUBLISH}do: body
          body:
            action: core.echo message=<% ctx(n) %>
            next:
              - when: <% ctx(n) < 3 %>
                publish: n=<% ctx(n) + 1 %>
                do: body
        """
    assert len(problems(text.replace("{PUBLISH}", ""))) == 3   # input, the loop's when and its publish
    valid(text.replace("{PUBLISH}", "publish: n=0\n                "))


def test_output_sees_every_publish_even_towards_engine_commands():
    valid("""
        version: 1.0
        tasks:
          t:
            action: core.noop
            next:
              - when: <% failed() %>
                publish: why=<% result() %>
                do: fail
              - when: <% succeeded() %>
                publish: done=true
        output:
          - why: <% ctx(why) %>
          - done: <% ctx(done) %>
        """)
    assert problems("version: 1.0\ntasks:\n  t:\n    action: core.noop\noutput:\n  - y: <% ctx().a %>\n") == [
        "wf.yaml:6:5: output.y: variable 'a' is referenced before assignment (no input, var or publish sets it)"]


def test_private_names_cannot_be_referenced():
    lines = problems("""
        version: 1.0
        vars:
          - __secret: 1
        tasks:
          t:
            action: core.echo message=<% ctx('__secret') %>
        """)
    assert lines == ["wf.yaml:7:5: task 't': input.message: variable '__secret' starts with '__': "
                     "it is private and cannot be referenced"]


def test_dotted_variable_names_are_accepted_and_checked():
    valid("""
        version: 1.0
        input:
          - in.put
        vars:
          - vars.key.with.periods: value
          - vars.nested:
              nested.periods: deep
        tasks:
          run:
            action: core.echo
            input:
              message: "{{ ctx()['vars.key.with.periods'] }} {{ ctx()['vars.nested']['nested.periods'] }}"
            next:
              - publish:
                  - published.hosts: <% result() %>
        output:
          - wf.with.periods: <% ctx()['published.hosts'] %> <% ctx('in.put') %>
        """)
    lines = problems("""
        version: 1.0
        vars:
          - " padded": 1
          - "": 2
        tasks:
          t:
            action: core.echo message="{{ ctx()['not.set'] }}"
        """)
    assert "vars[0]: name ' padded' must be non-empty text without leading or trailing blanks" in lines[0]
    assert "vars[1]: name '' must be non-empty text" in lines[1]
    assert "variable 'not.set' is referenced before assignment" in lines[2]


def test_every_inspection_class_in_one_report():
    """Syntax (schema), semantics (graph), expressions and context, all in one report."""
    lines = problems("""
        version: 1.0
        tasks:
          retry:
            action: core.noop
          t1:
            action: core.echo
            input: [not, a, mapping]
            next:
              - when: <% succeeded( %>
                do: t2, nowhere
          t2:
            with: <% ctx(xs) %>
        """)
    text = "\n".join(lines)
    assert "wf.yaml:4:3: task name 'retry' is reserved" in text
    assert "wf.yaml:8:5: task 't1': input must be a non-empty mapping or an expression" in text
    assert "wf.yaml:10:9: task 't1': next[0].when: bad expression" in text
    assert "wf.yaml:11:9: task 't1': transition to unknown task 'nowhere'" in text
    assert "wf.yaml:13:5: task 't2': the action property is required for a with-items task" in text
    assert "wf.yaml:13:5: task 't2': with.items: variable 'xs' is referenced before assignment" in text
