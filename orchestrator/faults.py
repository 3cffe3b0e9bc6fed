"""Deliberate crash points for the fault-injection tests (never active unless configured).

ORCHESTRATOR_FAULT_DIR names a folder; a file there named after a point (e.g. `after_commit`)
arms it once: the next process that reaches the point deletes the file and kills itself with
SIGKILL, exactly as a machine failure would.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def crash_point(name: str) -> None:
    folder = os.environ.get("ORCHESTRATOR_FAULT_DIR")
    if not folder:
        return
    trigger = Path(folder) / name
    try:
        trigger.unlink()
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
