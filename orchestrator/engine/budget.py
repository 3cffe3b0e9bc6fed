"""The expression budget: what one evaluation of a workflow expression may cost, in both formats.

Every evaluation (native Jinja, Orquesta's Jinja and YAQL) runs inside ``evaluation()``, which
holds two limits:

- **size**: no value an evaluation builds may be larger than ``Limits.max_bytes`` (measured as
  its JSON text, so a list holding the same string a thousand times counts a thousand times).
  The evaluators check sizes *before* every operation that can multiply its inputs (the hardened
  sandbox in sandbox.py, the YAQL overrides in orquesta/expressions.py), because a single C-level
  operation cannot be interrupted once it runs; they check results after the others.
- **time**: ``Limits.timeout`` seconds per evaluation. The core has no clock: the shell installs a
  ``Watch`` once per process (orchestrator/guard.py) that interrupts the evaluating thread by
  raising ``TimeExceeded`` in it. Without a watch installed (pure tests, a library embedding the
  engine without the shell) only the size limit holds.

Both failures surface as ``BudgetExceeded`` with the wording users see in task errors:
``expression exceeded 5 s`` and ``value larger than 4194304 bytes``.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, Iterator, Protocol

DEFAULT_TIMEOUT = 5.0
# Four times the 1 MiB input and result limits: a template may combine a few results into one
# value, while one operation on values this size takes milliseconds and an evaluation's live
# memory stays within tens of MiB (see docs/language.md, "Expression limits").
DEFAULT_MAX_BYTES = 4 << 20
MAX_ITEMS = 100_000            # items one collection may have (YAQL's limitIterators; Jinja's range cap)
MAX_CALL_DEPTH = 32            # nested macro calls in one Jinja evaluation
MAX_INTEGER_DIGITS = 10_000    # integers an evaluation may compute (`**`, `*`)


@dataclass(frozen=True)
class Limits:
    """The budget of one evaluation: `timeout` seconds (enforced by the shell's watch) and
    `max_bytes`, the largest value (as JSON text) an evaluation may build."""

    timeout: float = DEFAULT_TIMEOUT
    max_bytes: int = DEFAULT_MAX_BYTES
    max_items: int = MAX_ITEMS

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError("the expression timeout must be a positive number of seconds")
        if self.max_bytes < 1024:
            raise ValueError("the expression size limit must be at least 1024 bytes")


class BudgetExceeded(Exception):
    """An evaluation went over its time or size budget; the message is what the task reports."""


class TimeExceeded(BaseException):
    """Raised asynchronously in the evaluating thread by the shell's watch. A BaseException, so
    that no ``except Exception`` in Jinja, YAQL or an expression function swallows it."""


class StepTimeExceeded(TimeExceeded):
    """The same, when the evaluations of one supervisor step together used up the step's
    budget (the shell caps a step, which holds the run's row lock, at one timeout)."""


class Watch(Protocol):
    """The shell's timer. ``arm(seconds)`` starts watching the calling thread and returns a
    token; from `seconds` on, TimeExceeded is raised in that thread (again now and then, should
    code swallow it) until ``disarm(token)``, after which it never is, also not one pending."""

    def arm(self, seconds: float) -> Any: ...

    def disarm(self, token: Any) -> None: ...


_settings: dict[str, Any] = {"limits": Limits(), "watch": None}


def configure(limits: Limits | None = None, watch: Watch | None = None) -> None:
    """Set this process's limits and install the shell's watch (the shell calls this once)."""
    if limits is not None:
        _settings["limits"] = limits
    if watch is not None:
        _settings["watch"] = watch


def limits() -> Limits:
    return _settings["limits"]


def watched() -> bool:
    """Whether a time watch is installed in this process."""
    return _settings["watch"] is not None


class Budget:
    """The running account of one evaluation (size checks, macro depth)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.depth = 0

    def too_large(self) -> BudgetExceeded:
        return BudgetExceeded(f"value larger than {self.limits.max_bytes} bytes")

    def reserve(self, size: int) -> None:
        """Refuse, before it is built, a value of `size` bytes."""
        if size > self.limits.max_bytes:
            raise self.too_large()

    def check(self, value: Any) -> Any:
        """Refuse a value larger than the limit; return it otherwise."""
        if size_of(value, self.limits.max_bytes) > self.limits.max_bytes:
            raise self.too_large()
        return value

    def check_integer(self, bits: float) -> None:
        if bits > MAX_INTEGER_DIGITS * 3.33:
            raise BudgetExceeded(f"an integer with over {MAX_INTEGER_DIGITS:,} digits is not allowed")

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """One nested (macro) call; recursion deeper than MAX_CALL_DEPTH is refused."""
        if self.depth >= MAX_CALL_DEPTH:
            raise BudgetExceeded(f"calls nested deeper than {MAX_CALL_DEPTH} are not allowed")
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1


_active: ContextVar[Budget | None] = ContextVar("orchestrator_expression_budget", default=None)


def current() -> Budget:
    """The budget of the evaluation running in this thread (a fresh one outside any)."""
    return _active.get() or Budget(limits())


@contextlib.contextmanager
def evaluation() -> Iterator[Budget]:
    """The scope of one evaluation. Nested evaluations (a template rendered while rendering
    another) share the outermost one's budget and time. Raises BudgetExceeded on time out."""
    outer = _active.get()
    if outer is not None:
        yield outer
        return
    budget = Budget(limits())
    token = _active.set(budget)
    watch = _settings["watch"]
    armed = None
    try:
        try:
            try:
                if watch is not None:
                    armed = watch.arm(budget.limits.timeout)
                yield budget
            finally:
                if armed is not None:
                    watch.disarm(armed)
        except TimeExceeded as exc:
            if armed is not None:
                watch.disarm(armed)  # again: the first may have been interrupted before it ran
            if isinstance(exc, StepTimeExceeded):
                raise BudgetExceeded(f"expressions of one step exceeded {budget.limits.timeout:g} s") from None
            raise BudgetExceeded(f"expression exceeded {budget.limits.timeout:g} s") from None
    finally:
        _active.reset(token)


def size_of(value: Any, limit: int) -> int:
    """The size of `value` as JSON text, counted until it passes `limit` (so the cost is bounded
    by the limit, not by the value). Shared references count each time they appear."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, (bool, float)) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() * 30103 // 100000 + 2
        elif isinstance(item, Mapping):
            try:
                pairs = list(item.items())
            except Exception:  # a mapping-like object that cannot list itself: count it small
                total += 2
                continue
            total += 2 + len(pairs)
            if total > limit:
                return total
            for key, inner in pairs:
                stack.append(key)
                stack.append(inner)
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + len(item)
            if total > limit:
                return total
            stack.extend(item)
        elif isinstance(item, (bytes, bytearray)):
            total += len(item) + 2
        else:
            total += 8
        if total > limit:
            return total
    return total
