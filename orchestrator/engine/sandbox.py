"""The hardened Jinja sandbox both workflow formats evaluate templates in.

Jinja's ``ImmutableSandboxedEnvironment`` keeps templates away from Python internals; this one
also keeps every evaluation within its budget (budget.py): each operation that can make a value
much larger than its inputs is checked *before* it runs (``*``, ``**``, ``%``, ``+``, ``~``,
string methods such as ``replace``/``join``/``center``/``format``, filters such as ``join``,
``replace``, ``indent``, ``wordwrap``, ``sum``, ``tojson``), the result of every call and filter is
checked after it, template output is joined only while it fits, and macro recursion is capped.
It has no clock or randomness (no ``random`` filter, no ``lipsum``).

Field access on a value that has no such field says so (``x is a string, it has no field 'y'``)
instead of Jinja's ``'str object' has no attribute 'y'``: see ``describe``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable

from jinja2 import Undefined
from jinja2.compiler import CodeGenerator
from jinja2.runtime import Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from . import budget as budgets

# printf-style conversions: %[(key)][flags][width][.precision]; str.format fields: {[name][!c][:spec]}
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d*)(?:\.(\*|\d*))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*?:([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_SPEC_NUMBERS = re.compile(r"\d+")


def error_text(exc: BaseException, limit: int = 500) -> str:
    """`Type: message` of an error raised by expression code, cut to `limit` characters (a
    library's message may quote a huge value)."""
    text = f"{type(exc).__name__}: {str(exc).strip(chr(39))}"
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def describe(value: Any) -> str:
    """What a value is, in the words of a workflow author: 'a string', 'a list', 'null'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def field_message(expression: str, value: Any, name: Any) -> str:
    """`<receiver> is a string, it has no field 'name'`, the receiver's text taken from the
    expression when it can be found there (``result().stdout`` -> ``result()``)."""
    kind = describe(value)
    if isinstance(name, str) and len(name) > 100:
        return f"{kind} has no field {name[:100]!r}… ({len(name)} characters)"
    if isinstance(name, str):
        match = re.search(r"([\w$]+(?:\(\s*[^()]*\))?(?:\.[\w$]+(?:\(\s*[^()]*\))?|\[[^\[\]]*\])*)\s*"
                          rf"(?:\.\s*{re.escape(name)}\b|\[\s*['\"]{re.escape(name)}['\"]\s*\])", expression)
        if match:
            receiver = match.group(1)
            if kind == "a mapping":
                return f"{receiver} has no field {name!r}"
            return f"{receiver} is {kind}, it has no field {name!r}"
    if kind == "a mapping":
        return f"the mapping has no field {name!r}"
    return f"the value is {kind}, it has no field {name!r}"


def too_wide(template: str, limit: int) -> bool:
    """Whether a format string could build a string over `limit`: a width or precision over it,
    or one taken from the arguments (`%*d`, `{:{}}`), which cannot be checked beforehand."""
    for width, precision in _PERCENT_SPEC.findall(template):
        for number in (width, precision):
            if number == "*" or (number and int(number) > limit):
                return True
    for spec in _FORMAT_SPEC.findall(template):
        if "{" in spec or any(int(n) > limit for n in _SPEC_NUMBERS.findall(spec)):
            return True
    return False


def _widest(values: Iterable[Any], limit: int) -> int:
    return max((budgets.size_of(v, limit) for v in values), default=0)


def check_format(budget: budgets.Budget, template: str, args: Any) -> None:
    """Before ``template % args`` or ``template.format(*args)``: widths, and each field filled
    with the largest argument."""
    limit = budget.limits.max_bytes
    if too_wide(template, limit):
        raise budgets.BudgetExceeded("a format width that large is not allowed")
    values = list(args.values()) if isinstance(args, dict) else list(args) if isinstance(args, (list, tuple)) else [args]
    fields = template.count("%") + template.count("{")
    budget.reserve(len(template) + fields * _widest(values, limit))


def check_replace(budget: budgets.Budget, text: str, old: Any, new: Any, count: Any = -1) -> None:
    if not (isinstance(old, str) and isinstance(new, str)):
        return
    times = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    budget.reserve(len(text) + times * max(len(new) - len(old), 0))


def check_join(budget: budgets.Budget, separator: Any, items: list[Any]) -> None:
    limit = budget.limits.max_bytes
    size = len(separator) * max(len(items) - 1, 0) if isinstance(separator, str) else 0
    budget.reserve(size)
    for item in items:
        size += len(item) if isinstance(item, str) else budgets.size_of(item, limit)
        if size > limit:
            raise budget.too_large()


def _check_width(budget: budgets.Budget, value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > budget.limits.max_bytes:
        raise budgets.BudgetExceeded(f"a width of {value} is too large")


def _check_str_method(budget: budgets.Budget, text: str, name: str, args: tuple, kwargs: dict) -> tuple:
    """Before a str method runs: what it builds must fit. Returns the (possibly listed) args."""
    for value in (*args, *kwargs.values()):
        _check_width(budget, value)
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        budget.reserve(max(args[0], len(text)))
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        budget.reserve(len(text) + text.count("\t") * (size if isinstance(size, int) else 8))
    elif name == "replace" and len(args) >= 2:
        check_replace(budget, text, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1))
    elif name == "join" and args:
        items = args[0] if isinstance(args[0], (list, tuple)) else list(args[0])  # a generator is read once
        check_join(budget, text, items)
        args = (items, *args[1:])
    elif name == "translate" and args:
        table = args[0]
        widest = _widest(table.values(), budget.limits.max_bytes) if isinstance(table, dict) else 1
        budget.reserve(len(text) * max(widest, 1))
    return args


# Filters ------------------------------------------------------------------------------------

_SERIALIZING = frozenset({"string", "tojson", "pprint", "urlencode", "xmlattr", "sum", "list", "unique"})


def _filter_check(budget: budgets.Budget, name: str, args: tuple, kwargs: dict) -> tuple:
    """Before a filter runs (args[0] is the value filtered)."""
    limit = budget.limits.max_bytes
    for value in (*args[1:], *kwargs.values()):
        _check_width(budget, value)
    value = args[0] if args else None
    if name in _SERIALIZING:
        budget.check(value)
        if name == "sum":
            budget.check(kwargs.get("start", args[2] if len(args) > 2 else 0))
    elif name == "join":
        items = value if isinstance(value, (list, tuple)) else list(value)
        check_join(budget, args[1] if len(args) > 1 else kwargs.get("d", ""), items)
        args = (items, *args[1:])
    elif name == "replace" and isinstance(value, str) and len(args) >= 3:
        check_replace(budget, value, args[1], args[2], args[3] if len(args) > 3 else kwargs.get("count", -1))
    elif name == "format" and isinstance(value, str):
        check_format(budget, value, list(args[1:]) or kwargs)
    elif name == "center" and isinstance(value, str):
        budget.reserve(max(len(value), args[1] if len(args) > 1 and isinstance(args[1], int) else 80))
    elif name == "indent" and isinstance(value, str):
        width = args[1] if len(args) > 1 else kwargs.get("width", 4)
        prefix = len(width) if isinstance(width, str) else width if isinstance(width, int) else 4
        budget.reserve(len(value) + (value.count("\n") + 1) * prefix)
    elif name == "wordwrap" and isinstance(value, str):
        width = args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("width", 79)
        wrap = args[3] if len(args) > 3 else kwargs.get("wrapstring") or "\n"
        lines = len(value) // max(int(width) if isinstance(width, int) else 1, 1) + value.count(" ") + value.count("\n") + 1
        budget.reserve(len(value) + lines * (len(wrap) if isinstance(wrap, str) else limit))
    return args


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    passes = getattr(function, "jinja_pass_arg", None)

    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = budgets.current()
        head, rest = (args[:1], args[1:]) if passes is not None else ((), args)
        rest = _filter_check(budget, name, rest, kwargs)
        return budget.check(function(*head, *rest, **kwargs))

    if passes is not None:
        bounded.jinja_pass_arg = passes  # type: ignore[attr-defined]
    bounded.__name__ = getattr(function, "__name__", name)
    return bounded


# The environment ----------------------------------------------------------------------------

class _BoundedCodeGenerator(CodeGenerator):
    """Compiles `a ~ b` to a call that checks the joined size before joining."""

    def visit_Concat(self, node: Any, frame: Any) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class HardenedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with every evaluation kept within budget.py's limits.
    ``*``, ``**``, ``%`` and ``+`` are checked at run time (never folded at compile time, which
    would let ``{{ 10 ** 100000000 }}`` hang validation)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, **options: Any):
        options.setdefault("finalize", _finalize)
        super().__init__(**options)
        self.concat = _bounded_output  # template output, {% set %} blocks, macro bodies
        self.globals.pop("lipsum", None)
        self.filters.pop("random", None)
        for name, function in list(self.filters.items()):
            self.filters[name] = _bounded_filter(name, function)

    @staticmethod
    def bounded_concat(parts: tuple) -> str:
        budget = budgets.current()
        size = 0
        texts = []
        for part in parts:
            if not isinstance(part, str):
                budget.check(part)
                part = str(part)
            size += len(part)
            budget.reserve(size)
            texts.append(part)
        return "".join(texts)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = budgets.current()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            args = _check_str_method(budget, owner, getattr(__obj, "__name__", ""), args, kwargs)
        if isinstance(__obj, Macro):
            with budget.call():
                return budget.check(super().call(__context, __obj, *args, **kwargs))
        return budget.check(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Any:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map"):
            wrapped = super().wrap_str_format(value)

            def checked(*args: Any, **kwargs: Any) -> Any:
                budget = budgets.current()
                check_format(budget, owner, [*args, *kwargs.values(), *(
                    args[0].values() if value.__name__ == "format_map" and args and isinstance(args[0], dict) else ())])
                return wrapped(*args, **kwargs)
            return checked
        return super().wrap_str_format(value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        value = super().getattr(obj, attribute)
        if isinstance(value, Undefined) and not isinstance(obj, Undefined):
            return self.undefined(hint=_FieldHint(obj, attribute).text(), obj=obj, name=attribute)
        return value

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        if isinstance(value, Undefined) and not isinstance(obj, Undefined) and isinstance(argument, str):
            return self.undefined(hint=_FieldHint(obj, argument).text(), obj=obj, name=argument)
        return value

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = budgets.current()
        limit = budget.limits.max_bytes
        if operator == "%":
            if isinstance(left, str):
                check_format(budget, left, right)
            return budget.check(left % right)
        if operator == "**":
            if (isinstance(left, (int, float)) and isinstance(right, (int, float)) and abs(left) > 1
                    and right * math.log10(abs(left)) > budgets.MAX_INTEGER_DIGITS):
                raise budgets.BudgetExceeded(f"{left} ** {right} is too large")
            return left ** right
        if operator == "+":
            if isinstance(left, str) and isinstance(right, str):
                budget.reserve(len(left) + len(right))
            elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
                budget.reserve(budgets.size_of(left, limit) + budgets.size_of(right, limit))
            return left + right
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, (str, list, tuple)) and isinstance(count, int) and not isinstance(count, bool):
                if count > 0:
                    budget.reserve(max(budgets.size_of(sequence, limit) - 2, 1) * count)
                return left * right
        if isinstance(left, int) and isinstance(right, int):
            budget.check_integer(left.bit_length() + right.bit_length())
        return left * right


class _FieldHint:
    """The text of a failed field access, with a marker the evaluators replace with the
    receiver's name from the expression (sandbox.field_message)."""

    MARK = "\x00field\x00"

    def __init__(self, obj: Any, name: Any):
        self.obj = obj
        self.name = name

    def text(self) -> str:
        return f"{self.MARK}{describe(self.obj)}{self.MARK}{self.name}"


def undefined_message(expression: str, message: str) -> str:
    """Turn a _FieldHint text back into `x is a string, it has no field 'y'`."""
    mark = _FieldHint.MARK
    if mark not in message:
        return message
    _, kind, name = message.split(mark, 2)
    sample: Any = {"null": None, "a string": "", "a number": 0, "a list": [], "a boolean": False,
                   "a mapping": {}}.get(kind, object())
    return field_message(expression, sample, name)


def _finalize(value: Any) -> Any:
    """Every `{{ value }}` printed into text: checked before str() builds the text."""
    return budgets.current().check(value)


def _bounded_output(parts: Iterable[Any]) -> str:
    budget = budgets.current()
    size = 0
    texts = []
    for part in parts:
        size += len(part) if isinstance(part, str) else budgets.size_of(part, budget.limits.max_bytes)
        budget.reserve(size)
        texts.append(part)
    return "".join(texts)
