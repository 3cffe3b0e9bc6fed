import pytest

from orchestrator.engine.errors import ExpressionError
from orchestrator.engine.expressions import Evaluator

E = Evaluator()


@pytest.mark.parametrize("source, expected", [
    ("{{ n + 1 }}", 2),
    ("{{ items }}", [1, 2]),
    ("{{ s }}", "007"),                 # strings that look like numbers stay strings
    ("n is {{ n }}", "n is 1"),
    ("{{ n }}{{ n }}", "11"),          # mixed text renders a string
    ("{{ {'a': n} }}", {"a": 1}),
    ("{{ items | map('string') | list }}", ["1", "2"]),
    ("{{ length(items) }}", 2),
    ("{{ none }}", None),
    ("plain", "plain"),
])
def test_type_preserving_evaluation(source, expected):
    assert E.evaluate(source, {"n": 1, "items": [1, 2], "s": "007", "none": None}) == expected


def test_render_is_recursive_keys_included():
    assert E.render({"{{ k }}": ["{{ n }}", {"x": "{{ n * 2 }}"}]}, {"k": "key", "n": 3}) == {"key": [3, {"x": 6}]}


@pytest.mark.parametrize("source", [
    "{{ n.__class__ }}",
    "{{ n.__class__.__mro__[1].__subclasses__() }}",
    "{{ items.append(3) }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
])
def test_sandbox_blocks_python_internals(source):
    with pytest.raises(ExpressionError) as exc:
        E.evaluate(source, {"n": 1, "items": [1]})
    assert source in str(exc.value)


def test_undefined_names_fail_with_the_expression():
    with pytest.raises(ExpressionError, match=r"undefined: 'nope' is undefined in expression '\{\{ nope \}\}'"):
        E.evaluate("{{ nope }}", {})
    with pytest.raises(ExpressionError, match="undefined"):
        E.evaluate("x {{ a.b }}", {"a": {}})


def test_syntax_errors_are_reported_not_raised_by_check():
    assert E.check_syntax("{{ ok }}") is None
    assert "syntax error" in E.check_syntax("{{ not ok( }}")


@pytest.mark.parametrize("value, expected", [("{{ 1 > 0 }}", True), ("{{ [] }}", False), (True, True),
                                             ("{{ 'false' }}", False), ("{{ 0 }}", False)])
def test_truthy(value, expected):
    assert E.truthy(value, {}) is expected


def test_compiled_templates_are_cached():
    E.evaluate("{{ cached + 1 }}", {"cached": 1})
    assert "{{ cached + 1 }}" in E._cache


def test_join_of_a_generator_keeps_its_items():
    """The join size check reads a generator (map, select) once and joins what it read."""
    from orchestrator.engine.expressions import Evaluator

    evaluator = Evaluator()
    assert evaluator.evaluate("{{ ['b', 'a'] | map('upper') | join('+') }}", {}) == "B+A"
    assert evaluator.evaluate("{{ '-'.join(['b', 'a'] | map('upper')) }}", {}) == "B-A"
