"""What happens when a task execution completes, following Orquesta's conductor.

In order: retries are evaluated first (a retry reuses the record); then **every** outbound
transition whose `when` holds fires, in target-name order. Each fired transition publishes into
a new context layer, picks the route of its target (a split task gets a new route per inbound
transition) and stages the target; a join is ready once enough distinct inbound tasks have a
satisfied transition into it. Then the workflow status moves (fail fast: a failure that no
transition other than ``continue`` handles fails the workflow at once), and the engine commands
``continue``/``noop``/``fail`` named by fired transitions run inline, each as its own record
(not a task execution: no commands for the shell).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.commands import Command, VariablesSet
from ..core.errors import ExpressionError
from . import machine
from .expressions import Expressions, Scope
from .graph import Edge, OrquestaGraph
from .spec import ENGINE_COMMANDS
from ..core.statuses import ABENDED, ACTIVE, CANCELED, COMPLETED, FAILED, RETRYING, SUCCEEDED
from .state import OrquestaState, key_of

SATISFIED = "satisfied"
WAITING = "waiting"            # Orquesta's INBOUND_CRITERIA_WIP
NOT_SATISFIED = "not_satisfied"


@dataclass
class Step:
    """The commands of one conductor call, and the records handed out during it."""

    commands: list[Command] = field(default_factory=list)
    published: dict[str, Any] = field(default_factory=dict)

    def flush_variables(self) -> None:
        if self.published:
            self.commands.append(VariablesSet(dict(self.published)))
            self.published.clear()


class Flow:
    """Completion processing over one state; `step` collects the commands."""

    def __init__(self, graph: OrquestaGraph, expressions: Expressions, state: OrquestaState, step: Step):
        self.graph = graph
        self.expressions = expressions
        self.state = state
        self.step = step

    # Scopes ---------------------------------------------------------------------------------

    def scope(self, record_or_entry: dict[str, Any], result: Any = None) -> Scope:
        return Scope(self.state.context(record_or_entry["ctxs"]["in"]), record_or_entry["id"],
                     record_or_entry["route"], result, status_of=self.state.status_of, tasks=self)

    # Completion -----------------------------------------------------------------------------

    def complete(self, record: dict[str, Any], status: str, result: Any) -> None:
        """A record reached `status` (completed or not): retries, transitions, workflow status."""
        state = self.state
        old = record.get("status")
        state.set_status(record, status)
        engine_queue: list[tuple[str, int]] = []
        if status in COMPLETED:
            state.unstage(record["id"], record["route"])  # an arrival while it ran is absorbed, as in Orquesta
            scope = self.scope(record, result)
            if state.status in ACTIVE and self._should_retry(record, scope):
                record["retry"]["tally"] += 1
                state.set_status(record, RETRYING)
                state.stage(record["id"], record["route"], record["ctxs"]["in"], record["prev"], True,
                            retry=dict(record["retry"]))
                return
            if status != old:
                engine_queue = self._transitions(record, scope)
        self._workflow_event(record)
        for name, route in engine_queue:
            self.engine_command(name, route)
        if state.status in COMPLETED:
            record["term"] = True

    def _transitions(self, record: dict[str, Any], scope: Scope) -> list[tuple[str, int]]:
        state = self.state
        edges = self.graph.outbound.get(record["id"], [])
        if not edges:
            record["term"] = True
        source = key_of(record["id"], record["route"])
        engine_queue: list[tuple[str, int]] = []
        ready_targets: list[dict[str, Any]] = []
        manual_fail = False
        for edge in edges:
            try:
                record["next"][edge.id] = all(bool(self.expressions.evaluate(c, scope)) for c in [edge.when] if c)
            except ExpressionError as exc:
                record["next"][edge.id] = False
                self.fail(str(exc), record["id"], record["route"], edge.id)
                continue
            if not record["next"][edge.id]:
                continue
            published, error = self._publish(record, edge, scope)
            if error is not None:
                self.fail(error, record["id"], record["route"], edge.id)
                continue
            out = state.derive(record["ctxs"]["in"], published)
            route = self._route(edge, record["route"])
            staged = state.staged_entry(edge.target, route)
            if staged is not None:
                if 0 in out:
                    out.remove(0)
                staged["ctxs"]["in"] = state.fold(staged["ctxs"]["in"] + out)
                staged["prev"][edge.backref] = source
            else:
                staged = state.stage(edge.target, route, out, {edge.backref: source}, False)
            staged["ready"] = self.inbound_status(edge.target, record["route"]) == SATISFIED
            if edge.target in ENGINE_COMMANDS:
                engine_queue.append((edge.target, route))
                manual_fail = manual_fail or edge.target == "fail"
            elif staged["ready"]:
                ready_targets.append(staged)
        if manual_fail:  # "log, then fail": the other targets still run after the workflow failed
            for staged in ready_targets:
                staged["run_on_fail"] = True
        return engine_queue

    def _publish(self, record: dict[str, Any], edge: Edge, scope: Scope) -> tuple[dict[str, Any], str | None]:
        transition = self.graph.tasks[record["id"]].next[edge.ref]
        rolling = dict(scope.variables)
        published: dict[str, Any] = {}
        for name, expression in transition.publish:
            try:
                value = self.expressions.evaluate(expression, Scope(rolling, scope.task, scope.route, scope.result,
                                                                    status_of=scope.status_of, tasks=scope.tasks))
            except ExpressionError as exc:
                return published, f"publish {name}: {exc}"
            rolling[name] = value
            published[name] = value
        self.step.published.update(published)
        return published, None

    def _route(self, edge: Edge, route: int) -> int:
        if not self.graph.is_split(edge.target) or self.graph.in_cycle(edge.target):
            return route
        old = self.state.routes[route]
        if edge.backref in old:
            return route
        self.state.routes.append(old + [edge.backref])
        return len(self.state.routes) - 1

    def _should_retry(self, record: dict[str, Any], scope: Scope) -> bool:
        retry = record.get("retry")
        if not retry or retry["tally"] >= retry["count"]:
            return False
        if record["status"] in ABENDED and retry.get("when") is None:
            return True
        if retry.get("when") is None:
            return False
        try:
            return bool(self.expressions.evaluate(retry["when"], scope))
        except ExpressionError as exc:
            self.fail(f"retry.when: {exc}", record["id"], record["route"])
            return False

    # Joins and the workflow status ----------------------------------------------------------

    def inbound_status(self, task: str, route: int) -> str:
        """Whether enough distinct inbound tasks (on `route`) have a satisfied transition."""
        edges = self.graph.inbound.get(task, [])
        evaluation: dict[str, bool | None] = {e.source: None for e in edges}
        barrier = self.graph.barrier(task) or 1
        required = len(evaluation) if barrier == "*" else barrier
        for edge in edges:
            prev = self.state.record(edge.source, route)
            if prev is None:
                continue
            if not evaluation[edge.source]:
                evaluation[edge.source] = bool(prev["next"].get(edge.id))
        if list(evaluation.values()).count(True) >= required:
            return SATISFIED
        if None in evaluation.values() and (self.state.has_active() or self.state.ready_staged()):
            return WAITING
        return NOT_SATISFIED

    def has_next(self, record: dict[str, Any], eval_join: bool = True) -> bool:
        """A satisfied transition to something other than ``continue`` (a join counts when it
        can still be satisfied, or always when `eval_join` is False)."""
        if record.get("status") not in COMPLETED:
            return False
        for edge in self.graph.outbound.get(record["id"], []):
            if edge.target == "continue" or not record["next"].get(edge.id):
                continue
            if self.graph.barrier(edge.target) is not None:
                if not eval_join:
                    return True
                if self.inbound_status(edge.target, record["route"]) == NOT_SATISFIED:
                    continue
            return True
        return False

    def _workflow_event(self, record: dict[str, Any]) -> None:
        state = self.state
        status = record["status"]
        if status not in COMPLETED:
            return
        has_next = self.has_next(record)
        remediated = status in ABENDED and (has_next or self.has_next(record, eval_join=False))
        event = machine.task_event(status, remediated, state.has_active(), state.has_status({CANCELED}),
                                   bool(state.ready_staged()) or has_next)
        new = machine.next_status(state.status, event)
        if new is None:
            return
        state.status = new
        if new in COMPLETED:
            self.unreachable_joins()

    def unreachable_joins(self) -> None:
        for entry in list(self.state.staged):
            if self.graph.barrier(entry["id"]) is None or entry["ready"]:
                continue
            if self.inbound_status(entry["id"], entry["route"]) == NOT_SATISFIED:
                self.state.status = FAILED
                self.state.log_error(f'UnreachableJoinError: The join task|route "{entry["id"]}|{entry["route"]}" '
                                     f"is partially satisfied but unreachable.", entry["id"], entry["route"])

    def fail(self, message: str, task: str | None = None, route: int | None = None,
             transition: str | None = None) -> None:
        """An error the workflow cannot continue from: log it and fail the workflow."""
        self.state.log_error(message, task, route, transition)
        if self.state.status not in (CANCELED, FAILED):
            self.state.status = FAILED

    # Engine commands ------------------------------------------------------------------------

    def engine_command(self, name: str, route: int) -> None:
        """Run ``continue``/``noop`` (succeed) or ``fail`` (fail the workflow). It gets a record
        of its own, as in Orquesta's task sequence (rehearsals list it), but it is not a task
        execution: it emits no execution commands, so users never see it as a task; ``fail``
        shows as the run's error."""
        state = self.state
        staged = state.staged_entry(name, route)
        contexts = staged["ctxs"]["in"] if staged else [0]
        record = state.add_record(name, route, contexts, staged["prev"] if staged else {})
        state.unstage(name, route)
        status = FAILED if name == "fail" else SUCCEEDED
        if status == FAILED:
            state.log_error("Execution failed. See result for details.", name)
        self.complete(record, status, None)
