"""Sandboxed, type-preserving Jinja2 expressions.

A string that is exactly one ``{{ ... }}`` evaluates to the expression's own value (a list stays a
list); any other string with template syntax renders to text. Maps and lists render recursively.
Compiled templates are cached per source string, because compiling costs ~80x rendering.
"""

from __future__ import annotations

import math
import re
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any, Callable, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from .errors import ExpressionError

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<body>.*)\}\}\s*$", re.DOTALL)
_HAS_TEMPLATE = re.compile(r"\{\{|\{%|\{#")


def _length(value: Any) -> int:
    return len(value)


MAX_POWER_DIGITS = 10_000      # `**` results beyond this many digits are refused
MAX_REPEAT = 10_000_000        # `'x' * n` / `[..] * n` beyond this many elements are refused
# printf-style conversions: %[(key)][flags][width][.precision]; str.format fields: {[name][!c][:spec]}
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d*)(?:\.(\*|\d*))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*?:([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_SPEC_NUMBERS = re.compile(r"\d+")


def _too_wide(template: str) -> bool:
    """Whether a format string could build an absurdly long string: a width or precision over
    MAX_REPEAT, or one taken from the arguments (`%*d`, `{:{}}`), which cannot be checked here."""
    for width, precision in _PERCENT_SPEC.findall(template):
        for number in (width, precision):
            if number == "*" or (number and int(number) > MAX_REPEAT):
                return True
    for spec in _FORMAT_SPEC.findall(template):
        if "{" in spec or any(int(n) > MAX_REPEAT for n in _SPEC_NUMBERS.findall(spec)):
            return True
    return False


def _text_size(value: Any) -> int:
    """A cheap lower bound of the characters `value` prints as (strings and their lists)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(len(item) for item in value if isinstance(item, str)) + len(value)
    return 1


def _check_join(separator: Any, items: Any) -> None:
    if isinstance(separator, str) and isinstance(items, (list, tuple, range)):
        size = len(separator) * max(len(items) - 1, 0) + _text_size(list(items) if isinstance(items, range) else items)
        if size > MAX_REPEAT:
            raise SecurityError("a joined string that large is not allowed")


def _check_widths(args: tuple, kwargs: dict) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_REPEAT:
            raise SecurityError(f"a width of {value} is too large")


def _bounded_join(join: Callable[..., Any]) -> Callable[..., Any]:
    def bounded(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        items = value if isinstance(value, (list, tuple)) else list(value)  # a generator is read once
        _check_join(d, items)
        return join(eval_ctx, items, d, attribute)
    bounded.jinja_pass_arg = join.jinja_pass_arg  # type: ignore[attr-defined]
    return bounded


def _bounded(filter_function: Callable[..., Any]) -> Callable[..., Any]:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_widths(args[1:], kwargs)
        if filter_function.__name__ == "do_format" and args and isinstance(args[0], str) and _too_wide(args[0]):
            raise SecurityError("a format width that large is not allowed")
        return filter_function(*args, **kwargs)
    return bounded


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with `*` and `**` checked at run time (no constant folding at compile time,
    which would let `{{ 10 ** 100000000 }}` hang validation)."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """String padding/formatting with absurd widths would allocate gigabytes first."""
        if isinstance(getattr(__obj, "__self__", None), str):
            _check_widths(args, kwargs)
            if getattr(__obj, "__name__", "") == "join" and args:
                if not isinstance(args[0], (list, tuple, range)):
                    args = (list(args[0]), *args[1:])  # a generator is read once
                _check_join(__obj.__self__, args[0])
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map") and _too_wide(owner):
            raise SecurityError("a format width that large is not allowed")
        return super().wrap_str_format(value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%":
            if isinstance(left, str) and _too_wide(left):
                raise SecurityError("a format width that large is not allowed")
            return left % right
        if operator == "**":
            if (isinstance(left, (int, float)) and isinstance(right, (int, float)) and abs(left) > 1
                    and right * math.log10(abs(left)) > MAX_POWER_DIGITS):
                raise SecurityError(f"{left} ** {right} is too large")
            return left ** right
        for sequence, count in ((left, right), (right, left)):
            if (isinstance(sequence, (str, list, tuple)) and isinstance(count, int)
                    and max(len(sequence), _text_size(sequence)) * count > MAX_REPEAT):
                raise SecurityError("a repeated string or list that large is not allowed")
        return left * right


CACHE_LIMIT = 8192


class Evaluator:
    """Compiles and evaluates workflow templates in a sandbox; one instance per process is enough."""

    def __init__(self) -> None:
        self.env = _Sandbox(undefined=StrictUndefined, autoescape=False, optimized=False)
        self.env.globals["length"] = _length
        self.env.filters["length"] = _length
        for name in ("center", "format", "indent", "wordwrap", "truncate"):
            self.env.filters[name] = _bounded(self.env.filters[name])
        self.env.filters["join"] = _bounded_join(self.env.filters["join"])
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
        """Evaluate one template string (non-template strings come back unchanged)."""
        if not self.is_template(source):
            return source
        compiled = self.compile(source)
        try:
            value = _plain(compiled(context))
        except UndefinedError as exc:
            raise ExpressionError(source, f"undefined: {exc.message}") from None
        except SecurityError as exc:
            raise ExpressionError(source, f"not allowed: {exc}") from None
        except ExpressionError:
            raise
        except Exception as exc:  # any error raised by user expression code
            raise ExpressionError(source, f"{type(exc).__name__}: {exc}") from None
        return value

    def render(self, value: Any, context: Mapping[str, Any]) -> Any:
        """Render templates recursively through maps and lists, keys included."""
        if isinstance(value, str):
            return self.evaluate(value, context)
        if isinstance(value, dict):
            rendered = {}
            for key, item in value.items():
                new_key = self.render(key, context)
                if not isinstance(new_key, (str, int, float, bool)) and new_key is not None:
                    raise ExpressionError(str(key), f"a key must render to text, not a {type(new_key).__name__}")
                rendered[new_key] = self.render(item, context)
            return rendered
        if isinstance(value, list):
            return [self.render(v, context) for v in value]
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


_shared: Evaluator | None = None


def shared_evaluator() -> Evaluator:
    """The process's evaluator: conductors are built per supervisor step, and compiling a
    template costs far more than evaluating it, so the compiled cache must outlive them."""
    global _shared
    if _shared is None:
        _shared = Evaluator()
    return _shared
