"""YAQL and Jinja expressions with Orquesta's functions."""

import pytest

from orchestrator.core.errors import ExpressionError
from orchestrator.orquesta.expressions import Expressions, Scope

E = Expressions()
VARS = {"which": "c", "xs": [1, 2, 3], "count": 0, "d": {"a": 1}, "s": "007", "none": None, "__hidden": 1}
STATUS = {"t1": "succeeded", "t0": "failed"}


def scope(**kwargs):
    base = dict(variables=dict(VARS), task="t1", result={"x": 5},
                status_of=lambda name, route: STATUS.get(name, "null"))
    base.update(kwargs)
    return Scope(**base)


@pytest.mark.parametrize("source, expected", [
    ("<% ctx().which %>", "c"),
    ("<% ctx(which) %>", "c"),
    ('<% ctx("xs") %>', [1, 2, 3]),
    ("<% ctx().count + 1 %>", 1),
    ("<% ctx().d %>", {"a": 1}),
    ("<% ctx().s %>", "007"),                            # a single expression keeps its type
    ("<% ctx().none %>", None),
    ("n=<% ctx().count %> s=<% ctx().s %>", "n=0 s=007"),  # text: each expression replaced by str()
    ("<% ctx().xs %> x", "[1, 2, 3] x"),
    ("<% not ctx().which in list(a, b) %>", True),       # bare words are strings in YAQL
    ("<% ctx().which = 'c' and ctx().count < 1 %>", True),
    ("<% ctx(xs).select($ * 2) %>", [2, 4, 6]),
    ("<% len(ctx(xs)) %>", 3),
    ("<% str(ctx().count) %>", "0"),
    ("<% result().x %>", 5),
    ("<% succeeded() %>", True),
    ("<% failed() %>", False),
    ("<% completed() %>", True),
    ("<% task_status(t0) %>", "failed"),
    ("<% task_status(nope) %>", "null"),
    ("<% zip(ctx(xs), list(a, b)) %>", [[1, "a"], [2, "b"], [3, None]]),
    ("<% zip(list(1), list(2, 3), pad => 0) %>", [[1, 2], [0, 3]]),
    ('<% json(\'{"k": [1]}\') %>', {"k": [1]}),
    ("<% ctx().keys().len() %>", 6),                     # ctx() hides keys starting with __
    ("plain text", "plain text"),
])
def test_yaql(source, expected):
    assert E.evaluate(source, scope()) == expected


@pytest.mark.parametrize("source, expected", [
    ("{{ ctx().which }}", "c"),
    ("{{ ctx('xs') }}", [1, 2, 3]),
    ("{{ ctx().count + 1 }}", 1),
    ("{{ ctx().s }}", "007"),
    ("n={{ ctx().count }}", "n=0"),
    ("{{ ctx().xs | length }}", 3),
    ("{{ result().x }}", 5),
    ("{{ succeeded() and not failed() }}", True),
    ("{{ task_status('t0') }}", "failed"),
    ("{{ zip(ctx().xs, ['a']) }}", [[1, "a"], [2, None], [3, None]]),
    ("{% for x in ctx().xs %}{{ x }}{% endfor %}", "123"),
    ("{% raw %}{{ not rendered }}{% endraw %}", "{{ not rendered }}"),
    ("{{ json('[1, 2]') }}", [1, 2]),
])
def test_jinja(source, expected):
    assert E.evaluate(source, scope()) == expected


def test_item_forms():
    s = scope().with_item({"a": 1, "b": 2})
    assert E.evaluate("<% item() %>", s) == {"a": 1, "b": 2}
    assert E.evaluate("<% item(a) %>", s) == 1
    assert E.evaluate("{{ item('b') }}", s) == 2
    with pytest.raises(ExpressionError, match="does not have key"):
        E.evaluate("<% item(c) %>", s)
    with pytest.raises(ExpressionError, match="no current item"):
        E.evaluate("<% item() %>", scope())


def test_recursion_through_dicts_keys_and_lists():
    value = {"<% ctx().which %>": ["{{ ctx().count }}", {"k": "<% ctx().xs %>"}], "plain": 1}
    assert E.evaluate(value, scope()) == {"c": [0, {"k": [1, 2, 3]}], "plain": 1}


@pytest.mark.parametrize("source, reason", [
    ("<% ctx(nope) %>", "VariableUndefinedError"),
    ("<% ctx().nope %>", "ctx() has no field 'nope'"),
    ("{{ ctx('nope') }}", "VariableUndefinedError"),
    ("{{ ctx().nope }}", "UndefinedError"),
    ("{{ undefined_name }}", "UndefinedError"),
    ("<% 1 %> {{ 2 }}", "multiple types"),
    ("<% 1 / 0 %>", "ZeroDivisionError"),
])
def test_errors_name_the_expression(source, reason):
    with pytest.raises(ExpressionError) as exc:
        E.evaluate(source, scope())
    assert reason in str(exc.value)


def test_current_task_needed_for_status_functions():
    with pytest.raises(ExpressionError, match="current task"):
        E.evaluate("<% succeeded() %>", Scope(VARS))


@pytest.mark.parametrize("source", [
    "{{ ctx.__globals__ }}",
    "{{ ctx.func.__globals__ }}",
    "{{ ctx().xs.__class__.__mro__ }}",
    "{{ ctx().xs.pop.__self__.__class__ }}",
])
def test_jinja_is_sandboxed(source):
    with pytest.raises(ExpressionError):
        E.evaluate(source, scope())
    assert VARS["xs"] == [1, 2, 3]


def test_string_results_are_not_evaluated_again_by_default():
    data = scope(variables={"evil": "<% ctx().secret %>", "secret": "s3cret"})
    assert E.evaluate("<% ctx().evil %>", data) == "<% ctx().secret %>"
    assert Expressions(reevaluate=True).evaluate("<% ctx().evil %>", data) == "s3cret"   # Orquesta's way


def test_check_reports_syntax_problems():
    found = dict(E.check(["<% ctx( %>", "{{ 1 + }}", "<% 1 %> {{ 2 }}", "{% if %}", "fine <% 1 %>"]))
    assert len(found) == 4
    assert "<% ctx( %>" in found


def test_has_expressions():
    assert E.has_expressions("a <% 1 %>") and E.has_expressions("{{ x }}")
    assert E.has_expressions("{% if x %}{% endif %}")
    assert not E.has_expressions("100%") and not E.has_expressions(3)


# The shared expression budget, purity, field messages, task() --------------------------------

TOO_LARGE = f"value larger than {4 << 20} bytes"


@pytest.mark.parametrize("source, message", [
    ("<% range(0, 100000000).toList() %>", "a collection over 100,000 items is not allowed"),
    ("<% list(range(0, 100000000)) %>", "a collection over 100,000 items is not allowed"),
    ("<% 'a' * 10000000 %>", TOO_LARGE),
    ("<% ('ab' * 1000).replace('a', 'b' * 10000) %>", TOO_LARGE),
    ("<% list('a' * 1000000, 'a' * 1000000, 'a' * 1000000, 'a' * 1000000, 'a' * 1000000).join(',') %>", TOO_LARGE),
    ("<% str(list('a' * 1000000, 'a' * 1000000, 'a' * 1000000, 'a' * 1000000, 'a' * 1000000)) %>", TOO_LARGE),
    ("<% concat('a' * 3000000, 'b' * 3000000) %>", TOO_LARGE),
    ("<% 'a' * 3000000 + 'b' * 3000000 %>", TOO_LARGE),
    ("{% set a='a'*9999999 %}{% set b=a~a~a~a~a~a~a~a~a~a %}{{ b|length }}", TOO_LARGE),
    ("{{ ('ab'*1000)|replace('a', 'b'*10000) }}", TOO_LARGE),
])
def test_both_languages_are_bounded(source, message):
    with pytest.raises(ExpressionError) as exc:
        E.evaluate(source, scope())
    assert message in str(exc.value)


def test_regular_expressions_cannot_backtrack():
    # on Python's backtracking `re` this takes minutes in C code, where no timer can interrupt it
    assert E.evaluate("<% ('a' * 40 + 'b') =~ '(a+)+$' %>", scope()) is False
    assert E.evaluate("<% 'abc' =~ 'b' %>", scope()) is True
    assert E.evaluate("<% 'abc'.matches('^x') %>", scope()) is False
    with pytest.raises(ExpressionError, match="RE2 syntax"):
        E.evaluate("<% 'aa' =~ '(a)\\\\1' %>", scope())


def test_no_clock_and_a_pure_random():
    with pytest.raises(ExpressionError, match="now\\(\\) is not available"):
        E.evaluate("<% now() %>", scope())
    with pytest.raises(ExpressionError, match="localtz"):
        E.evaluate("<% localtz() %>", scope())
    run_a, run_b = E.bound("run-a"), E.bound("run-b")
    first = run_a.evaluate("<% random(1000000, 9999999) %>", scope())
    assert 1000000 <= first <= 9999999
    assert run_a.evaluate("<% random(1000000, 9999999) %>", scope()) == first  # evaluated again: the same
    assert run_b.evaluate("<% random(1000000, 9999999) %>", scope()) != first  # another run: another one
    two = run_a.evaluate("<% list(random(), random()) %>", scope())
    assert two[0] != two[1] and all(0 <= x < 1 for x in two)
    assert 1 <= run_a.evaluate("{{ random(1, 6) }}", scope()) <= 6


@pytest.mark.parametrize("source, message", [
    ("<% result().stdout %>", "result() is a string, it has no field 'stdout'"),
    ("{{ result().stdout }}", "result() is a string, it has no field 'stdout'"),
    ("<% ctx().n.x %>", "ctx().n is a number, it has no field 'x'"),
    ("<% ctx(n).x %>", "ctx(n) is a number, it has no field 'x'"),
    ("<% ctx().d.missing %>", "ctx().d has no field 'missing'"),
    ("{{ ctx().d.missing }}", "ctx().d has no field 'missing'"),
    ("{{ ctx('n').x }}", "ctx('n') is a number, it has no field 'x'"),
])
def test_field_access_on_non_mappings_says_what_happened(source, message):
    with pytest.raises(ExpressionError) as exc:
        E.evaluate(source, scope(variables={"n": 1, "d": {"a": 1}}, task="t", result="out"))
    assert message in str(exc.value)


def test_mappings_and_lists_still_resolve_fields():
    s = scope(variables={"d": {"a": {"b": 2}}, "l": [{"x": 1}, {"x": 2}]}, task="t", result={"stdout": "ok"})
    assert E.evaluate("<% ctx().d.a.b %>", s) == 2
    assert E.evaluate("<% ctx().l.x %>", s) == [1, 2]
    assert E.evaluate("<% result().stdout %>", s) == "ok"
    assert E.evaluate("{{ result().stdout }}", s) == "ok"


TASK_FUNCTIONS = """
version: 1.0
vars:
  - loop: true
tasks:
  task1:
    action: core.echo message="foobar"
    next:
      - publish:
          - this_task_no_arg: '<% task().task_id %>'
          - this_task_by_name: '<% task("task1").task_id %>'
          - jinja_result: '{{ task("task1").result.stdout }}'
        do: task2
  task2:
    action: core.noop
  task3:
    action: core.noop
    next:
      - do: task4
  task4:
    action: core.local
    next:
      - when: '<% ctx("loop") = true %>'
        publish:
          - loop: false
        do: task4
      - when: '<% ctx("loop") != true %>'
        do: task5
  task5:
    action: core.noop
  task6:
    action: core.noop
    next:
      - do: task8
  task7:
    action: core.noop
    next:
      - do: task8
  task8:
    action: core.noop
    next:
      - do: task9
  task9:
    action: core.echo
    input:
      message: '<% task("task8").task_id + "__" + str(task("task8").route) %>'
  fan:
    with: <% list(a, b) %>
    action: core.echo message=<% item() %>
output:
  - this_task_no_arg: '<% ctx("this_task_no_arg") %>'
  - this_task_by_name: '<% ctx("this_task_by_name") %>'
  - jinja_result: '<% ctx(jinja_result) %>'
  - that_task_by_name: '<% task("task1").task_id %>'
  - last_task4_result: '<% task("task4").result.stdout %>'
  - task9__1__parent: '<% task("task9", route=>1).result.stdout %>'
  - task9__2__route: '<% task("task9", route=>2).route %>'
  - task9_status: '<% task(task9, route=>1).status %>'
  - fan: '<% task(fan).result.items.select($.result.stdout) %>'
  - run: '<% task(task1).workflow_execution_id %>'
"""


def test_task_function_as_stackstorm_defines_it():
    from orchestrator.orquesta.rehearse import rehearse_waves

    from .helpers import wf

    script = [{"task": "task1", "result": {"stdout": "foobar"}}, {"task": "task4", "result": {"stdout": "last"}},
              {"task": "task9", "result": {"stdout": "t9"}}, {"task": "fan", "result": {"stdout": "echo"}}]
    run = rehearse_waves(wf(TASK_FUNCTIONS), {}, script)
    assert run.status == "succeeded", run.state.errors
    assert run.output == {
        "this_task_no_arg": "task1", "this_task_by_name": "task1", "jinja_result": "foobar",
        "that_task_by_name": "task1", "last_task4_result": "last", "task9__1__parent": "t9",
        "task9__2__route": 2, "task9_status": "succeeded", "fan": ["echo", "echo"], "run": "rehearsal",
    }


def test_task_function_of_an_unknown_task():
    with pytest.raises(ExpressionError, match='Unable to find task execution for "nope"'):
        E.evaluate("<% task(nope) %>", scope(task="t"))


def test_error_messages_do_not_quote_huge_values():
    with pytest.raises(ExpressionError) as exc:
        E.evaluate("<% ('a' * 2000000).nosuchmethod() %>", scope())
    assert len(exc.value.reason) < 700
