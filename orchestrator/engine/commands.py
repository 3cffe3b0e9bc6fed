"""The events and commands live in orchestrator/core/commands.py (both formats share them); this
name stays importable for the shell and for scripts written against it."""

from ..core.commands import *  # noqa: F401,F403
from ..core.commands import __all__  # noqa: F401
