"""Orquesta's two expression languages: YAQL ``<% … %>`` and Jinja ``{{ … }}`` / ``{% … %}``.

One interface hides the language: ``Expressions.evaluate(value, scope)`` renders a value
recursively through maps (keys included) and lists; a string that is exactly one expression
keeps the expression's own type, any other string has each expression replaced by its text
(``str()`` of the value, as Orquesta does). A string may use one language only.

The functions Orquesta workflows call are available in both languages: ``ctx()``, ``ctx(name)``,
``item()``, ``item(key)``, ``result()``, ``succeeded()``, ``failed()``, ``completed()``,
``task_status(name)``, StackStorm's ``task(name)``, ``zip(a, b, pad=…)`` and ``json(s)``
(functions.py); YAQL also has its standard library without clock or randomness (yaql_library.py)
and Jinja its filters. Jinja runs in the hardened sandbox the native format uses
(engine/sandbox.py) and every evaluation within the shared expression budget (engine/budget.py).

Deliberate difference from Orquesta: a string *result* is not evaluated again (Orquesta does,
which executes ``<% %>`` found in data: st2#5956). Pass ``reevaluate=True`` for the old way.
"""

from __future__ import annotations

import collections.abc  # noqa: F401  (yaql 3.x on Python 3.11 needs it imported first)
import contextlib
import copy
import functools
import inspect
import re
from dataclasses import replace
from typing import Any, Callable, Iterator

import jinja2
from yaql.language import exceptions as yaql_exc
from yaql.language import utils as yaql_utils

from ..engine import budget as budgets
from ..core.errors import ExpressionError
from ..engine.sandbox import HardenedSandbox, error_text, field_message, undefined_message
from . import yaql_library
from .functions import (COMPLETED, PLAIN_FUNCTIONS, SCOPED_FUNCTIONS, UNSET, FunctionError,  # noqa: F401
                        Scope, VariableUndefined, make_random)
from .yaql_library import FieldMissing

YAQL_PATTERN = re.compile(r"<%.*?%>", re.DOTALL)
JINJA_PATTERN = re.compile(r"{{.*?}}", re.DOTALL)
JINJA_BLOCK_PATTERN = re.compile(r"{%.*?%}", re.DOTALL)


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
        self.run_id = ""
        self.executions: Any = None
        self._limits: budgets.Limits | None = None
        self._root = yaql_library.create_root()
        for name, func in SCOPED_FUNCTIONS.items():
            self._root.register_function(_yaql_scoped(func), name=name)
        for name, func in PLAIN_FUNCTIONS.items():
            self._root.register_function(func, name=name)
        self._root.register_function(_yaql_random, name="random")
        self._jinja = HardenedSandbox(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self._yaql_cache: dict[str, Any] = {}
        self._jinja_cache: dict[str, Any] = {}

    def bound(self, run_id: str, executions: Any = None) -> "Expressions":
        """This evaluator (its caches shared) for one run: `run_id` seeds random() and names
        task() executions, `executions` reads executions that ended in earlier steps."""
        view = copy.copy(self)
        view.run_id = run_id
        view.executions = executions
        return view

    # Public API -----------------------------------------------------------------------------

    @staticmethod
    def has_expressions(value: Any) -> bool:
        return isinstance(value, str) and bool(languages_in(value))

    def evaluate(self, value: Any, scope: Scope) -> Any:
        """Render a value recursively within the expression budget (one for the whole value);
        raises ExpressionError naming the expression."""
        if not isinstance(value, (str, dict, list)):
            return value
        if (self.run_id and not scope.run_id) or (self.executions is not None and scope.executions is None):
            scope = replace(scope, run_id=scope.run_id or self.run_id, executions=scope.executions or self.executions)
        with _bounded(value):
            return budgets.current().check(self._evaluate(value, scope))

    def _evaluate(self, value: Any, scope: Scope) -> Any:
        if isinstance(value, dict):
            return {self._evaluate(k, scope): self._evaluate(v, scope) for k, v in value.items()}
        if isinstance(value, list):
            return [self._evaluate(v, scope) for v in value]
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
        limits = budgets.limits()
        if limits is not self._limits:  # the engine carries YAQL's limits: rebuilt when they change
            self._yaql = yaql_library.create_engine(limits)
            self._limits = limits
            self._yaql_cache.clear()
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
        output: Any = text
        for expr in exprs:
            compiled = self._yaql_compiled(expr)
            context = self._root.create_child_context()
            context["__scope"] = scope
            context["__random"] = make_random(scope, expr)
            try:
                result = plain(compiled.evaluate(context=context))
            except VariableUndefined as exc:
                raise ExpressionError(expr, f"VariableUndefinedError: {exc}") from None
            except FieldMissing as exc:
                raise ExpressionError(expr, field_message(expr, exc.value, exc.name)) from None
            except KeyError as exc:
                key = exc.args[0] if exc.args else ""
                raise ExpressionError(expr, field_message(expr, {}, key)) from None
            except yaql_exc.CollectionTooLargeException:
                raise ExpressionError(expr, f"a collection over {budgets.limits().max_items:,} items "
                                            "is not allowed") from None
            except yaql_exc.MemoryQuotaExceededException:
                raise ExpressionError(expr, str(budgets.current().too_large())) from None
            except (budgets.BudgetExceeded, budgets.TimeExceeded, ExpressionError):
                raise
            except Exception as exc:  # anything user expression code raises
                raise ExpressionError(expr, error_text(exc)) from None
            if self.reevaluate and isinstance(result, str):
                result = self._evaluate(result, scope)
            if len(exprs) > 1 or len(text) > len(expr):
                output = output.replace(expr, _text(budgets.current().check(result)))
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
        context["random"] = make_random(scope, "jinja")
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
                    result = self._evaluate(result, scope)
                if len(exprs) > 1 or len(text) > len(expr):
                    output = output.replace(expr, _text(budgets.current().check(result)))
                else:
                    output = result
            return output
        except (ExpressionError, budgets.BudgetExceeded, budgets.TimeExceeded):
            raise
        except jinja2.TemplateSyntaxError as exc:
            raise ExpressionError(text, f"syntax error: {exc.message}") from None
        except jinja2.UndefinedError as exc:
            raise ExpressionError(expr, f"UndefinedError: {undefined_message(expr, exc.message or '')}") from None
        except jinja2.sandbox.SecurityError as exc:
            raise ExpressionError(expr, f"not allowed: {exc}") from None
        except VariableUndefined as exc:
            raise ExpressionError(expr, f"VariableUndefinedError: {exc}") from None
        except Exception as exc:
            raise ExpressionError(expr, error_text(exc)) from None


@contextlib.contextmanager
def _bounded(value: Any) -> Iterator[None]:
    """One evaluation within the budget; a budget failure becomes an ExpressionError naming the
    value (the innermost expression, when a size check failed inside one)."""
    try:
        with budgets.evaluation():
            yield
    except budgets.BudgetExceeded as exc:
        raise ExpressionError(value if isinstance(value, str) else _first_expression(value), str(exc)) from None


def _first_expression(value: Any) -> str:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and languages_in(item):
            return item
        if isinstance(item, dict):
            stack.extend([*item.keys(), *item.values()])
        elif isinstance(item, list):
            stack.extend(item)
    return str(value)[:200]


def _yaql_random(context: Any, *bounds: Any) -> Any:
    return context["__random"](*bounds)


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
    elif params == ["name", "route"]:
        def adapted(context, name=None, route=None):
            return convert(func(context["__scope"], name, route))
    else:  # pragma: no cover - every scoped function has at most two arguments
        raise TypeError(f"cannot adapt {func.__name__}")
    adapted.__name__ = func.__name__.lstrip("_")
    return adapted
