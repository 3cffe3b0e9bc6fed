"""YAQL and Jinja expressions with Orquesta's functions."""

import pytest

from orchestrator.engine.errors import ExpressionError
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
