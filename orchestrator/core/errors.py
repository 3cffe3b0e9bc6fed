"""Errors both formats report: validation problems that name their place, expression failures, refused operations and unstorable input."""

from __future__ import annotations

from dataclasses import dataclass


def one_line(text: str) -> str:
    """A message safe to print as one line: line breaks and other control characters escaped."""
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow file, at a place (1-based line and column when known)."""

    message: str
    line: int | None = None
    column: int | None = None

    def render(self, source: str) -> str:
        message = one_line(self.message)
        if self.line is None:
            return f"{source}: {message}"
        return f"{source}:{self.line}:{self.column or 1}: {message}"


class WorkflowInvalid(Exception):
    """A workflow file that cannot run; carries every problem found, not only the first."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        unique = {(p.line, p.column, p.message): p for p in problems}
        self.problems = sorted(unique.values(), key=lambda p: (p.line or 0, p.column or 0, p.message))
        self.partial = None  # set by the parser: what could still be checked (spec.PartialWorkflow)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [p.render(self.source) for p in self.problems]


class ParametersInvalid(Exception):
    """Run parameters that do not match the workflow's parameter schema (every problem listed)."""

    def __init__(self, workflow: str, problems: list[str]):
        self.workflow = workflow
        self.problems = [one_line(p) for p in problems]
        super().__init__(f"invalid parameters for workflow '{one_line(workflow)}': " + "; ".join(self.problems))


class ExpressionError(Exception):
    """A template that could not be compiled or rendered; the message names the expression."""

    def __init__(self, expression: str, reason: str):
        self.expression = expression
        self.reason = reason
        super().__init__(f"{reason} in expression {expression!r}")


class OperationRefused(ValueError):
    """An operator's request the run's status does not allow (pause a finished run, resume a
    running one, respond to a finished run, ...): the request changed nothing. `status` is the
    run's status when it was refused."""

    def __init__(self, message: str, status: str | None):
        self.status = status
        super().__init__(one_line(message))


class InputInvalid(ValueError):
    """A value given from outside (parameters, an answer to core.ask) that cannot be stored as it
    is: each problem names its place (`params.name[2]`)."""

    def __init__(self, field: str, problems: list[str]):
        self.field = field
        self.problems = [one_line(p) for p in problems]
        super().__init__("; ".join(self.problems))
