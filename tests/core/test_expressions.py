import pytest

from orchestrator.core.errors import ExpressionError
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


# The expression budget (engine/budget.py, engine/sandbox.py) ---------------------------------

MAX = 4 << 20
TOO_LARGE = f"value larger than {MAX} bytes"

SIZE_BOMBS = [
    # the issue's `~` chain: 999,999,900 characters
    "{% set a='a'*9999999 %}{% set b=a~a~a~a~a~a~a~a~a~a %}{% set c=b~b~b~b~b~b~b~b~b~b %}{{ c|length }}",
    "{% set a='a'*999999 %}{% set b=a~a~a~a~a~a %}{{ b|length }}",
    "{% set a='a'*2000000 %}{{ (a + a + a)|length }}",
    "{{ ('ab'*1000)|replace('a', 'b'*10000) }}",
    "{{ ('ab'*1000).replace('a', 'b'*10000) }}",
    "{% set s='a'*1000000 %}{{ [s,s,s,s,s]|join }}",
    "{% set s='a'*1000000 %}{{ ','.join([s,s,s,s,s]) }}",
    "{% set s='a'*1000000 %}{{ [s,s,s,s,s] }}",
    "{% set s='a'*1000000 %}{{ [s,s,s,s,s]|tojson }}",
    "{% set s='a'*1000000 %}{{ [s,s,s,s,s]|string }}",
    "{% set l=['a'*1000000] %}{{ (l+l+l+l+l)|length }}",
    "{{ ['a'*100000]*100 }}",
    "{{ ('{0}'*100000).format('a'*1000) }}",
    "{{ '%s%s' % ('a'*3000000, 'b'*3000000) }}",
    "{{ ('a\\n'*100000)|indent('x'*100) }}",
    "{{ 'x'|center(100000000) }}",
    "{{ 'x'.ljust(100000000) }}",
    "{{ ('\\t'*1000).expandtabs(100000) }}",
    "{{ 'ab'.translate({97: 'x'*5000000}) }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}",
    "{% for i in range(100000) %}{{ 'x'*100 }}{% endfor %}",
    "{% set s %}{% for i in range(100000) %}{{ 'x'*100 }}{% endfor %}{% endset %}{{ s|length }}",
    "{% macro m() %}{% for i in range(100000) %}{{ 'x'*100 }}{% endfor %}{% endmacro %}{{ m()|length }}",
    "{% set s='a'*1000000 %}{{ [[s], [s], [s], [s], [s]]|sum(start=[])|length }}",
    "{{ ('a '*1000000)|wordwrap(1, wrapstring='x'*10) }}",
]


@pytest.mark.parametrize("source", SIZE_BOMBS)
def test_no_operator_sequence_builds_a_value_over_the_size_limit(source):
    with pytest.raises(ExpressionError) as exc:
        E.evaluate(source, {})
    assert TOO_LARGE in str(exc.value) or "too large" in str(exc.value)


@pytest.mark.parametrize("source, reason", [
    ("{{ 10 ** 100000 }}", "is too large"),
    ("{% set ns = namespace(n=10**1000) %}{% for i in range(20) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ 1 }}",
     "digits is not allowed"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}", "nested deeper than 32"),
    ("{{ '%*d' % (5, 1) }}", "format width"),
    ("{{ [1]|batch(100000000, 0)|list }}", "width of 100000000"),
])
def test_other_limits(source, reason):
    with pytest.raises(ExpressionError) as exc:
        E.evaluate(source, {})
    assert reason in str(exc.value)


def test_values_within_the_limit_are_fine():
    assert E.evaluate("{{ ('a'*1000000 ~ 'b'*1000000 ~ 'c')|length }}", {}) == 2_000_001
    assert E.evaluate("{{ ('ab'*10)|replace('a', 'xyz') }}", {}) == "xyzb" * 10
    assert E.evaluate("{{ [1, 2, 3]|join('-') }}", {}) == "1-2-3"
    assert E.evaluate("{{ 2 ** 100 }}", {}) == 2 ** 100


def test_no_clock_or_randomness_in_templates():
    for source in ("{{ [1, 2]|random }}", "{{ lipsum() }}"):
        with pytest.raises(ExpressionError):
            E.evaluate(source, {})


@pytest.mark.parametrize("source, message", [
    ("{{ s.stdout }}", "s is a string, it has no field 'stdout'"),
    ("{{ result.stdout }}", "result is a string, it has no field 'stdout'"),
    ("{{ n.x }}", "n is a number, it has no field 'x'"),
    ("{{ items.x }}", "items is a list, it has no field 'x'"),
    ("{{ d.missing }}", "d has no field 'missing'"),
    ("{{ d['missing'] }}", "d has no field 'missing'"),
    ("{{ d.a.b }}", "d.a is a number, it has no field 'b'"),
])
def test_field_access_messages(source, message):
    with pytest.raises(ExpressionError) as exc:
        E.evaluate(source, {"s": "text", "result": "out", "n": 1, "items": [1], "d": {"a": 1}})
    assert message in str(exc.value)


def test_the_size_limit_is_configurable():
    from orchestrator.engine import budget

    before = budget.limits()
    try:
        budget.configure(budget.Limits(max_bytes=10_000))
        with pytest.raises(ExpressionError, match="value larger than 10000 bytes"):
            E.evaluate("{{ 'x' * 20000 }}", {})
    finally:
        budget.configure(before)
