"""StackStorm Orquesta's native workflow language on our engine.

A file with ``version: 1.0`` and ``tasks`` as a mapping is an Orquesta workflow. ``load`` parses
and validates it into an OrquestaWorkflow; ``OrquestaConductor`` runs it with the same commands
and events as the engine's Conductor, following Orquesta's execution semantics (every satisfied
transition fires, branch context layers, split routes, join counting, fail fast, engine
commands, retries, with-items, reruns); pause, resume, cancel, core.ask answers, call watches
and input limits are the run control both formats share (core/control.py, through
control.py here). Pure: no Celery, database, clock or files.
"""

from .conductor import OrquestaConductor, RerunError
from .expressions import Expressions, Scope
from .state import OrquestaState
from .workflow import OrquestaWorkflow, is_orquesta, load

__all__ = ["OrquestaConductor", "OrquestaState", "OrquestaWorkflow", "Expressions", "Scope", "RerunError",
           "is_orquesta", "load"]
