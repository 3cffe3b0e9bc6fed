"""Orquesta's two expression languages: YAQL ``<% … %>`` and Jinja ``{{ … }}`` / ``{% … %}``.

One interface hides the language: ``Expressions.evaluate(value, scope)`` renders a value
recursively through maps (keys included) and lists; a string that is exactly one expression
keeps the expression's own type, any other string has each expression replaced by its text
(``str()`` of the value, as Orquesta does). A string may use one language only.

The functions Orquesta workflows call are available in both languages: ``ctx()``, ``ctx(name)``,
``item()``, ``item(key)``, ``result()``, ``succeeded()``, ``failed()``, ``completed()``,
``task_status(name)``, ``zip(a, b, pad=…)`` and ``json(s)``; YAQL also has its standard library
(``list``, ``str``, ``len``, ``random``, …) and Jinja its filters. Jinja runs in a sandbox.

Deliberate difference from Orquesta: a string *result* is not evaluated again (Orquesta does,
which executes ``<% %>`` found in data: st2#5956). Pass ``reevaluate=True`` for the old way.
"""

from __future__ import annotations

import collections.abc  # noqa: F401  (yaql 3.x on Python 3.11 needs it imported first)
import functools
import inspect
import json
import re
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any, Callable

import jinja2
import yaql
from jinja2.sandbox import SandboxedEnvironment
from yaql.language import exceptions as yaql_exc
from yaql.language import utils as yaql_utils

from ..engine.errors import ExpressionError

YAQL_PATTERN = re.compile(r"<%.*?%>", re.DOTALL)
JINJA_PATTERN = re.compile(r"{{.*?}}", re.DOTALL)
JINJA_BLOCK_PATTERN = re.compile(r"{%.*?%}", re.DOTALL)

COMPLETED = frozenset({"succeeded", "failed", "timeout", "abandoned", "canceled"})
UNSET = "null"
_NO_ITEM = object()


@dataclass
class Scope:
    """What an expression can see.

    `variables` is the merged context (``ctx()``); `task`/`route`/`result` describe the current
    task (``result()``, ``succeeded()``…); `item` is the current with-items item; `status_of`
    answers ``task_status(name)`` for a task on a route (following routes back through splits).
    """

    variables: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    route: int = 0
    result: Any = None
    item: Any = _NO_ITEM
    status_of: Callable[[str, int], str] | None = None

    def with_item(self, item: Any) -> "Scope":
        return Scope(self.variables, self.task, self.route, self.result, item, self.status_of)


class VariableUndefined(Exception):
    def __init__(self, name: str):
        super().__init__(f'The variable "{name}" is undefined.')


# The functions, each taking the Scope first ------------------------------------------------

def _ctx(scope: Scope, key: Any = None) -> Any:
    if key:
        if key not in scope.variables:
            raise VariableUndefined(key)
        if str(key).startswith("__"):
            raise VariableUndefined(key)
        return scope.variables[key]
    return {k: v for k, v in scope.variables.items() if not str(k).startswith("__")}


def _current(scope: Scope) -> str:
    if scope.task is None:
        raise ValueError("The current task is not set in the context.")
    return scope.task


def _task_status(scope: Scope, name: str) -> str:
    if scope.status_of is None:
        return UNSET
    return scope.status_of(name, scope.route)


def _succeeded(scope: Scope) -> bool:
    return _task_status(scope, _current(scope)) == "succeeded"


def _failed(scope: Scope) -> bool:
    return _task_status(scope, _current(scope)) == "failed"


def _completed(scope: Scope) -> bool:
    return _task_status(scope, _current(scope)) in COMPLETED


def _result(scope: Scope) -> Any:
    _current(scope)
    return scope.result


def _item(scope: Scope, key: Any = None) -> Any:
    if scope.item is _NO_ITEM:
        raise ValueError("There is no current item (item() is only defined in with-items tasks).")
    if not key:
        return scope.item
    if not isinstance(scope.item, collections.abc.Mapping):
        raise ValueError("Item is not type of collections.abc.Mapping.")
    if key not in scope.item:
        raise ValueError(f'Item does not have key "{key}".')
    return scope.item[key]


def _zip(*args: Any, pad: Any = None) -> list:
    lists = [[] if arg is None else list(arg) for arg in args]
    if len(lists) == 1:
        return lists[0]
    return [list(t) for t in zip_longest(*lists, fillvalue=pad)]


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise TypeError("Given object is not typeof string.")
    return json.loads(value)


SCOPED_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "ctx": _ctx, "item": _item, "result": _result, "succeeded": _succeeded, "failed": _failed,
    "completed": _completed, "task_status": _task_status,
}
PLAIN_FUNCTIONS: dict[str, Callable[..., Any]] = {"zip": _zip, "json": _json}


# Conversions --------------------------------------------------------------------------------

def plain(value: Any) -> Any:
    """YAQL/Jinja results as JSON-friendly data (tuples and frozen dicts become lists and dicts)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, collections.abc.Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if inspect.isgenerator(value) or isinstance(value, collections.abc.Iterator):
        return [plain(v) for v in value]
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def languages_in(text: str) -> list[str]:
    found = []
    if YAQL_PATTERN.search(text):
        found.append("yaql")
    if JINJA_PATTERN.search(text) or JINJA_BLOCK_PATTERN.search(text):
        found.append("jinja")
    return found


# The evaluator ------------------------------------------------------------------------------

class Expressions:
    """Evaluates Orquesta expressions; one instance per process is enough (compiled YAQL and
    Jinja expressions are cached per source string)."""

    def __init__(self, reevaluate: bool = False):
        self.reevaluate = reevaluate
        self._yaql = yaql.language.factory.YaqlFactory().create()
        self._root = yaql.create_context()
        for name, func in SCOPED_FUNCTIONS.items():
            self._root.register_function(_yaql_scoped(func), name=name)
        for name, func in PLAIN_FUNCTIONS.items():
            self._root.register_function(func, name=name)
        self._jinja = SandboxedEnvironment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self._yaql_cache: dict[str, Any] = {}
        self._jinja_cache: dict[str, Any] = {}

    # Public API -----------------------------------------------------------------------------

    @staticmethod
    def has_expressions(value: Any) -> bool:
        return isinstance(value, str) and bool(languages_in(value))

    def evaluate(self, value: Any, scope: Scope) -> Any:
        """Render a value recursively; raises ExpressionError naming the expression."""
        if isinstance(value, dict):
            return {self.evaluate(k, scope): self.evaluate(v, scope) for k, v in value.items()}
        if isinstance(value, list):
            return [self.evaluate(v, scope) for v in value]
        if not isinstance(value, str):
            return value
        languages = languages_in(value)
        if not languages:
            return value
        if len(languages) > 1:
            raise ExpressionError(value, "Expression with multiple types is not supported")
        if languages[0] == "yaql":
            return self._evaluate_yaql(value, scope)
        return self._evaluate_jinja(value, scope)

    def check(self, value: Any) -> list[tuple[str, str]]:
        """Syntax problems in a value (recursively): (expression, reason) pairs."""
        problems: list[tuple[str, str]] = []
        if isinstance(value, dict):
            for k, v in value.items():
                problems += self.check(k) + self.check(v)
        elif isinstance(value, list):
            for v in value:
                problems += self.check(v)
        elif isinstance(value, str):
            languages = languages_in(value)
            if len(languages) > 1:
                problems.append((value, "expression with multiple types (YAQL and Jinja) is not supported"))
            elif languages == ["yaql"]:
                for expr in YAQL_PATTERN.findall(value):
                    try:
                        self._yaql_compiled(expr)
                    except ExpressionError as exc:
                        problems.append((expr, exc.reason))
            elif languages == ["jinja"]:
                try:
                    self._jinja.parse(value)
                    for expr in JINJA_PATTERN.findall(value):
                        self._jinja_compiled(expr)
                except jinja2.TemplateSyntaxError as exc:
                    problems.append((value, f"syntax error: {exc.message}"))
                except ExpressionError as exc:
                    problems.append((exc.expression, exc.reason))
        return problems

    # YAQL -----------------------------------------------------------------------------------

    def _yaql_compiled(self, expr: str) -> Any:
        compiled = self._yaql_cache.get(expr)
        if compiled is None:
            body = expr[2:-2].strip()
            try:
                compiled = self._yaql(body)
            except (yaql_exc.YaqlException, ValueError, TypeError) as exc:
                raise ExpressionError(expr, f"syntax error: {exc}") from None
            self._yaql_cache[expr] = compiled
        return compiled

    def _evaluate_yaql(self, text: str, scope: Scope) -> Any:
        exprs = YAQL_PATTERN.findall(text)
        context = self._root.create_child_context()
        context["__scope"] = scope
        output: Any = text
        for expr in exprs:
            compiled = self._yaql_compiled(expr)
            try:
                result = plain(compiled.evaluate(context=context))
            except VariableUndefined as exc:
                raise ExpressionError(expr, f"VariableUndefinedError: {exc}") from None
            except KeyError as exc:
                raise ExpressionError(expr, f"Unable to resolve key {exc} from context") from None
            except Exception as exc:  # anything user expression code raises
                raise ExpressionError(expr, f"{type(exc).__name__}: {str(exc).strip(chr(39))}") from None
            if self.reevaluate and isinstance(result, str):
                result = self.evaluate(result, scope)
            if len(exprs) > 1 or len(text) > len(expr):
                output = output.replace(expr, _text(result))
            else:
                output = result
        return output

    # Jinja ----------------------------------------------------------------------------------

    def _jinja_compiled(self, expr: str) -> Any:
        compiled = self._jinja_cache.get(expr)
        if compiled is None:
            try:
                compiled = self._jinja.compile_expression(expr[2:-2].strip(), undefined_to_none=False)
            except jinja2.TemplateSyntaxError as exc:
                raise ExpressionError(expr, f"syntax error: {exc.message}") from None
            self._jinja_cache[expr] = compiled
        return compiled

    def _jinja_context(self, scope: Scope) -> dict[str, Any]:
        context: dict[str, Any] = {name: functools.partial(func, scope) for name, func in SCOPED_FUNCTIONS.items()}
        context.update(PLAIN_FUNCTIONS)
        return context

    def _evaluate_jinja(self, text: str, scope: Scope) -> Any:
        context = self._jinja_context(scope)
        env = self._jinja.overlay()
        env.filters.update({name: functools.partial(func, scope) for name, func in SCOPED_FUNCTIONS.items()})
        env.filters.update(PLAIN_FUNCTIONS)
        expr = text
        try:
            if JINJA_BLOCK_PATTERN.search(text):
                return env.from_string(text).render(context)
            exprs = JINJA_PATTERN.findall(text)
            output: Any = text
            for expr in exprs:
                result = self._jinja_compiled(expr)(**context)
                if isinstance(result, jinja2.Undefined):
                    result._fail_with_undefined_error()
                result = plain(result)
                if self.reevaluate and isinstance(result, str):
                    result = self.evaluate(result, scope)
                if len(exprs) > 1 or len(text) > len(expr):
                    output = output.replace(expr, _text(result))
                else:
                    output = result
            return output
        except ExpressionError:
            raise
        except jinja2.TemplateSyntaxError as exc:
            raise ExpressionError(text, f"syntax error: {exc.message}") from None
        except jinja2.UndefinedError as exc:
            raise ExpressionError(expr, f"UndefinedError: {exc.message}") from None
        except VariableUndefined as exc:
            raise ExpressionError(expr, f"VariableUndefinedError: {exc}") from None
        except Exception as exc:
            raise ExpressionError(expr, f"{type(exc).__name__}: {exc}") from None


def _yaql_scoped(func: Callable[..., Any]) -> Callable[..., Any]:
    """Adapt a Scope-first function to YAQL, which passes its own context as `context`."""
    params = list(inspect.signature(func).parameters)[1:]
    convert = yaql_utils.convert_input_data
    if not params:
        def adapted(context):
            return convert(func(context["__scope"]))
    elif len(params) == 1 and params[0] in ("key", "name"):
        if params[0] == "key":
            def adapted(context, key=None):
                return convert(func(context["__scope"], key))
        else:
            def adapted(context, name):
                return convert(func(context["__scope"], name))
    else:  # pragma: no cover - every scoped function has at most one argument
        raise TypeError(f"cannot adapt {func.__name__}")
    adapted.__name__ = func.__name__.lstrip("_")
    return adapted
