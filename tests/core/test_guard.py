"""The time guard (orchestrator/guard.py): every evaluation ends within its budget, on the main
thread and in pool threads, and no interruption ever lands outside an evaluation.

Upper bounds only, generous for a loaded CI machine; nothing here asserts a lower bound on speed.
"""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator import guard
from orchestrator.engine import budget
from orchestrator.core.errors import ExpressionError
from orchestrator.engine.expressions import Evaluator
from orchestrator.orquesta.expressions import Expressions, Scope

NESTED_FOR = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x"
YAQL_BOMB = "<% range(0, 100000).select(range(0, 100000).len()).len() %>"
MACRO_BOMB = ("{% macro f(n) %}{% for i in range(100000) %}{{ i }}{% endfor %}{% endmacro %}"
              "{% for j in range(100000) %}{{ f(j)|length }}{% endfor %}")


@pytest.fixture
def guarded():
    before = budget.limits()
    guard.install(timeout=1.0, max_bytes=before.max_bytes)
    yield
    budget.configure(before)


def _timed(call, *args):
    started = time.monotonic()
    with pytest.raises(ExpressionError) as exc:
        call(*args)
    return time.monotonic() - started, str(exc.value)


@pytest.mark.parametrize("evaluate, source", [
    (lambda s: Evaluator().evaluate(s, {}), NESTED_FOR),
    (lambda s: Evaluator().evaluate(s, {}), MACRO_BOMB),
    (lambda s: Expressions().evaluate(s, Scope()), NESTED_FOR),
    (lambda s: Expressions().evaluate(s, Scope()), YAQL_BOMB),
    (lambda s: Expressions().evaluate(s, Scope()), "<% sequence().len() %>"),  # an endless iterator
    # the bomb: YAQL stops the range at 100,000 items, which alone take longer than 1 s
    (lambda s: Expressions().evaluate(s, Scope()), "<% range(0, 100000000).select($ * 2).len() %>"),
])
def test_a_bomb_fails_after_the_timeout(guarded, evaluate, source):
    elapsed, message = _timed(evaluate, source)
    assert "expression exceeded 1 s" in message or (
        "range(0, 100000000)" in source and "a collection over 100,000 items" in message)
    assert elapsed < 30


def test_pool_threads_are_bounded_too_and_each_other_untouched(guarded):
    outcomes: dict[str, object] = {}

    def bomb():
        outcomes["bomb"] = _timed(Evaluator().evaluate, NESTED_FOR, {})

    def quick():
        outcomes["quick"] = [Evaluator().evaluate("{{ n + 1 }}", {"n": i}) for i in range(2000)]

    threads = [threading.Thread(target=bomb), threading.Thread(target=quick)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert "expression exceeded 1 s" in outcomes["bomb"][1]
    assert outcomes["quick"] == list(range(1, 2001))


def test_no_interruption_lands_after_an_evaluation(guarded):
    # evaluations that end just around their deadline, then plain Python work that must not be hit
    evaluator = Evaluator()
    for _ in range(30):
        try:
            evaluator.evaluate("{% for a in range(100000) %}{% endfor %}x", {})
        except ExpressionError:
            pass
    deadline = time.monotonic() + 3  # longer than the timeout plus the guard's re-fire interval
    spins = 0
    while time.monotonic() < deadline:
        spins += 1
    assert spins > 0


def test_a_step_budget_caps_many_evaluations(guarded):
    slow = "{% for a in range(100000) %}{% for b in range(5) %}{% endfor %}{% endfor %}x"
    evaluator = Evaluator()
    started = time.monotonic()
    failures = []
    with guard.step():
        for _ in range(200):
            try:
                evaluator.evaluate(slow, {})
            except ExpressionError as exc:
                failures.append(str(exc))
    assert time.monotonic() - started < 30
    assert failures and all("exceeded 1 s" in f for f in failures)


def test_install_reads_the_settings(monkeypatch):
    from orchestrator.config import settings

    before = budget.limits()
    monkeypatch.setenv("ORCHESTRATOR_EXPRESSION_TIMEOUT", "2.5")
    monkeypatch.setenv("ORCHESTRATOR_EXPRESSION_MAX_BYTES", "65536")
    settings.cache_clear()
    try:
        guard.install()
        assert (budget.limits().timeout, budget.limits().max_bytes) == (2.5, 65536)
        assert budget.watched()
    finally:
        settings.cache_clear()
        budget.configure(before)
