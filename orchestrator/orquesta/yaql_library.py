"""The YAQL engine and root context Orquesta expressions run with, hardened like the Jinja sandbox.

- YAQL's own limits are on: ``yaql.limitIterators`` (no collection over budget.MAX_ITEMS items:
  ``range(0, 1e8)`` stops there) and ``yaql.memoryQuota`` (budget's max_bytes, checked by YAQL
  after every function call on the shallow size of its result).
- Operations that can make a value much larger than their inputs are checked before they run,
  with the deep (JSON) size the Jinja sandbox uses: ``replace``, ``join``, ``str``, ``concat``.
- Regular expressions run on RE2 (linear time: a backtracking pattern such as ``(a+)+$`` cannot
  pin the process in C code, where no timer can interrupt it): ``s =~ pattern``, ``s !~ pattern``
  and ``s.matches(pattern)``; YAQL's regex objects (``regex(p).search(s)``…) are not offered.
- The standard library's clock and randomness are gone: ``now()`` and ``localtz()`` are removed
  (``now()`` says why), ``random()`` is the pure one of functions.py.
- ``x.name`` on a value without such a field raises FieldMissing (the evaluator words it).
"""

from __future__ import annotations

import collections.abc  # noqa: F401  (yaql 3.x on Python 3.11 needs it imported first)
from typing import Any

import re2
import yaql
from yaql.language import exceptions as yaql_exc
from yaql.language import specs, yaqltypes
from yaql.language import utils as yaql_utils

from ..engine import budget as budgets
from ..engine.sandbox import check_join, check_replace
from . import functions

IMPURE = ("now", "localtz", "random")


class FieldMissing(Exception):
    """`value.name` where value has no field `name`."""

    def __init__(self, value: Any, name: str):
        self.value = value
        self.name = name
        super().__init__(f"no field {name!r}")


def create_engine(limits: budgets.Limits) -> Any:
    return yaql.language.factory.YaqlFactory().create(options={
        "yaql.limitIterators": limits.max_items, "yaql.memoryQuota": limits.max_bytes,
        "yaql.convertInputData": True})


def create_root() -> Any:
    """The root context: YAQL's standard library without clock, randomness or backtracking
    regular expressions, with the budget checks and field messages above."""
    root = yaql.create_context(regex=False)
    layer = root
    while layer is not None:
        for name in IMPURE:
            specs_found, _ = layer.get_functions(name)
            for spec in list(specs_found):
                layer.delete_function(spec)
        layer = layer.parent
    context = root.create_child_context()
    for function in (_replace, _join, _join_, _str, _concat, _get_property, _regex_matches,
                     _regex_not_matches, _matches):
        context.register_function(function)
    context.register_function(functions.now, name="now")
    return context


def _budget() -> budgets.Budget:
    return budgets.current()


@specs.parameter("string", yaqltypes.String())
@specs.parameter("old", yaqltypes.String())
@specs.parameter("new", yaqltypes.String())
@specs.parameter("count", int)
@specs.method
@specs.name("replace")
def _replace(string: str, old: str, new: str, count: int = -1) -> str:
    check_replace(_budget(), string, old, new, count)
    return string.replace(old, new, count)


@specs.parameter("sequence", yaqltypes.Iterable())
@specs.parameter("separator", yaqltypes.String())
@specs.inject("str_delegate", yaqltypes.Delegate("str"))
@specs.method
@specs.name("join")
def _join(sequence: Any, separator: str, str_delegate: Any) -> str:
    items = list(sequence)
    check_join(_budget(), separator, items)
    return separator.join(map(str_delegate, items))


@specs.parameter("sequence", yaqltypes.Iterable())
@specs.parameter("separator", yaqltypes.String())
@specs.inject("str_delegate", yaqltypes.Delegate("str"))
@specs.method
@specs.name("join")
def _join_(separator: str, sequence: Any, str_delegate: Any) -> str:
    return _join(sequence, separator, str_delegate)


@specs.parameter("value", nullable=True)
@specs.name("str")
def _str(value: Any) -> str:
    _budget().check(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


@specs.parameter("args", yaqltypes.String())
@specs.name("concat")
def _concat(*args: str) -> str:
    _budget().reserve(sum(len(a) for a in args))
    return "".join(args)


@specs.name("#operator_.")
@specs.parameter("obj", yaqltypes.PythonType((str, int, float, bool), nullable=True))
@specs.parameter("name", yaqltypes.Keyword())
@specs.inject("func", yaqltypes.Delegate(use_convention=False))
def _get_property(func: Any, obj: Any, name: str) -> Any:
    try:
        return func(f"#property#{name}", obj)
    except (yaql_exc.NoFunctionRegisteredException, yaql_exc.NoMatchingFunctionException):
        raise FieldMissing(obj, name) from None


# Regular expressions on RE2 ------------------------------------------------------------------

def _compile(pattern: str) -> Any:
    try:
        return re2.compile(pattern)
    except re2.error as exc:
        raise ValueError(f"regular expression {pattern!r} is not supported: {exc} "
                         "(RE2 syntax: no backreferences or lookaround)") from None


@specs.parameter("string", yaqltypes.String())
@specs.parameter("pattern", yaqltypes.String())
@specs.name("#operator_=~")
def _regex_matches(string: str, pattern: str) -> bool:
    return _compile(pattern).search(string) is not None


@specs.parameter("string", yaqltypes.String())
@specs.parameter("pattern", yaqltypes.String())
@specs.name("#operator_!~")
def _regex_not_matches(string: str, pattern: str) -> bool:
    return _compile(pattern).search(string) is None


@specs.parameter("string", yaqltypes.String())
@specs.parameter("pattern", yaqltypes.String())
@specs.method
@specs.name("matches")
def _matches(string: str, pattern: str) -> bool:
    return _compile(pattern).search(string) is not None


def convert(value: Any) -> Any:
    return yaql_utils.convert_input_data(value)
