"""Sandboxed, type-preserving Jinja2 expressions.

A string that is exactly one ``{{ ... }}`` evaluates to the expression's own value (a list stays a
list); any other string with template syntax renders to text. Maps and lists render recursively.
Compiled templates are cached per source string, because compiling costs ~80x rendering.
Templates run in the hardened sandbox (sandbox.py) and every top-level evaluation within the
expression budget (budget.py): a time and a size limit, shared with the Orquesta evaluator.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any, Callable, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError
from jinja2.sandbox import SecurityError

from . import budget as budgets
from ..core.errors import ExpressionError
from .sandbox import HardenedSandbox, error_text, undefined_message

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<body>.*)\}\}\s*$", re.DOTALL)
_HAS_TEMPLATE = re.compile(r"\{\{|\{%|\{#")


def _length(value: Any) -> int:
    return len(value)


CACHE_LIMIT = 8192


class Evaluator:
    """Compiles and evaluates workflow templates in a sandbox; one instance per process is enough."""

    def __init__(self) -> None:
        self.env = HardenedSandbox(undefined=StrictUndefined, autoescape=False, optimized=False)
        self.env.globals["length"] = _length
        self.env.filters["length"] = _length
        self._cache: dict[str, Callable[[Mapping[str, Any]], Any]] = {}

    @staticmethod
    def is_template(value: Any) -> bool:
        return isinstance(value, str) and _HAS_TEMPLATE.search(value) is not None

    def compile(self, source: str) -> Callable[[Mapping[str, Any]], Any]:
        """Return a callable ``context -> value``; raises ExpressionError on bad syntax."""
        compiled = self._cache.get(source)
        if compiled is not None:
            return compiled
        if len(self._cache) >= CACHE_LIMIT:  # a bound for long-lived processes seeing many workflows
            self._cache.clear()
        single = _SINGLE_EXPRESSION.match(source)
        try:
            if single and "}}" not in single.group("body") and "{{" not in single.group("body"):
                expression = self.env.compile_expression(single.group("body"), undefined_to_none=False)
                compiled = expression
            else:
                template = self.env.from_string(source)
                compiled = template.render
        except TemplateSyntaxError as exc:
            raise ExpressionError(source, f"syntax error: {exc.message}") from None
        except Exception as exc:  # what Jinja's compiler raises on pathological input
            raise ExpressionError(source, f"cannot compile: {type(exc).__name__}: {str(exc)[:200]}") from None
        self._cache[source] = compiled
        return compiled

    def check_syntax(self, source: str) -> str | None:
        """The syntax error of a template, or None when it compiles."""
        try:
            self.compile(source)
        except ExpressionError as exc:
            return exc.reason
        return None

    def evaluate(self, source: str, context: Mapping[str, Any]) -> Any:
        """Evaluate one template string (non-template strings come back unchanged) within the
        expression budget; raises ExpressionError naming the template."""
        if not self.is_template(source):
            return source
        with _bounded(source):
            compiled = self.compile(source)
            try:
                return budgets.current().check(_plain(compiled(context)))
            except UndefinedError as exc:
                raise ExpressionError(source, f"undefined: {undefined_message(source, exc.message or '')}") from None
            except SecurityError as exc:
                raise ExpressionError(source, f"not allowed: {exc}") from None
            except (ExpressionError, budgets.BudgetExceeded, budgets.TimeExceeded):
                raise
            except Exception as exc:  # any error raised by user expression code
                raise ExpressionError(source, error_text(exc)) from None

    def render(self, value: Any, context: Mapping[str, Any]) -> Any:
        """Render templates recursively through maps and lists, keys included; one budget for
        the whole value."""
        if isinstance(value, str):
            return self.evaluate(value, context)
        if not isinstance(value, (dict, list)):
            return value
        with _bounded(value, self):
            return self._render(value, context)

    def _render(self, value: Any, context: Mapping[str, Any]) -> Any:
        if isinstance(value, str):
            return self.evaluate(value, context)
        if isinstance(value, dict):
            rendered = {}
            for key, item in value.items():
                new_key = self._render(key, context)
                if not isinstance(new_key, (str, int, float, bool)) and new_key is not None:
                    raise ExpressionError(str(key), f"a key must render to text, not a {type(new_key).__name__}")
                rendered[new_key] = self._render(item, context)
            return budgets.current().check(rendered)
        if isinstance(value, list):
            return budgets.current().check([self._render(v, context) for v in value])
        return value

    def truthy(self, source: Any, context: Mapping[str, Any]) -> bool:
        """A `when` condition: a template evaluated for truth, or a plain boolean."""
        value = self.render(source, context)
        if isinstance(value, str):
            return value.strip().lower() not in ("", "false", "0", "none", "null", "no")
        return bool(value)

    def templates_in(self, value: Any) -> list[str]:
        """Every template string inside a value (for syntax checks)."""
        found: list[str] = []
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                if self.is_template(item):
                    found.append(item)
            elif isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        return found


def _plain(value: Any) -> Any:
    """Turn Jinja's lazy results (generators from filters like map) into JSON-friendly values.

    An Undefined that reached here (a missing name, or an attribute the sandbox hid) raises.
    """
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a JSON number")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 10_000:
        raise ValueError("an integer with over 3,000 digits is not kept as data")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, range, KeysView, ValuesView, ItemsView)) or isinstance(value, Iterator):
        return [_plain(v) for v in value]
    raise TypeError(f"the value is a {type(value).__name__}, not data (did you forget to call it?)")


@contextlib.contextmanager
def _bounded(value: Any, evaluator: Evaluator | None = None) -> Iterator[None]:
    """One evaluation within the budget; a budget failure becomes an ExpressionError naming the
    template (for a map or list, the last template in it)."""
    try:
        with budgets.evaluation():
            yield
    except budgets.BudgetExceeded as exc:
        source = value if isinstance(value, str) or evaluator is None else _first_template(evaluator, value)
        raise ExpressionError(source, str(exc)) from None


def _first_template(evaluator: Evaluator, value: Any) -> str:
    found = evaluator.templates_in(value)
    return found[-1] if found else str(value)[:200]


_shared: Evaluator | None = None


def shared_evaluator() -> Evaluator:
    """The process's evaluator: conductors are built per supervisor step, and compiling a
    template costs far more than evaluating it, so the compiled cache must outlive them."""
    global _shared
    if _shared is None:
        _shared = Evaluator()
    return _shared
