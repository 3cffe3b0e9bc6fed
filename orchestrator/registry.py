"""Finding workflows by reference: a file path, YAML text, or a name registered in
ORCHESTRATOR_WORKFLOWS folders or in the database. Parsed definitions are cached by content.
Both formats load here: ours, and Orquesta's native one (`tasks` as a mapping)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Callable

from .core.errors import WorkflowInvalid
from .formats import AnyWorkflow, load_any

SUFFIXES = (".workflow.yaml", ".workflow.yml", ".yaml", ".yml")


class WorkflowNotFound(LookupError):
    pass


def default_name(path: Path) -> str:
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@lru_cache(maxsize=256)
def _compile(text: str, source: str, name: str | None) -> AnyWorkflow:
    return load_any(text, source, name)


def compile_workflow(text: str, source: str = "<workflow>", name: str | None = None,
                     action_exists: Callable[[str], bool] | None = None) -> AnyWorkflow:
    """Parse and validate (cached per content); the action check runs on every call."""
    try:
        workflow = _compile(text, source, name)
    except WorkflowInvalid:
        if action_exists is None:
            raise
        load_any(text, source, name, action_exists)
        raise
    if action_exists is not None and any(not action_exists(action) for action in workflow.actions):
        # Re-run the full check so unknown actions are reported with their positions.
        load_any(text, source, name, action_exists)
    return workflow


@lru_cache(maxsize=256)
def load_stored(text: str, source: str = "<workflow>", name: str | None = None) -> AnyWorkflow:
    """A definition stored with a run, to carry that run on (the supervisor's steps, the views of
    a run). It was validated when the run started; a newer release's stricter static checks (say,
    Orquesta's inspection of variables) must not strand the runs in progress, so only what the
    conductor needs is checked here. A new start of the same text goes through compile_workflow
    and is refused with the full report."""
    return load_any(text, source, name, strict=False)


def load_file(path: str | Path, action_exists: Callable[[str], bool] | None = None) -> AnyWorkflow:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise WorkflowInvalid(str(path), [_problem(f"cannot read file: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise WorkflowInvalid(str(path), [_problem("not a text file (UTF-8 expected)")]) from None
    return compile_workflow(text, str(path), default_name(path), action_exists)


def _problem(message: str):
    from .core.errors import Problem

    return Problem(message)


def find_in_folders(name: str, folders: tuple[str, ...]) -> Path | None:
    """A workflow file named `name` (with any workflow suffix) in the configured folders."""
    if "/" in name or name in ("", ".", ".."):
        return None
    for folder in folders:
        for suffix in SUFFIXES:
            candidate = Path(folder) / f"{name}{suffix}"
            if is_file(candidate):
                return candidate
    return None


def file_in_folders(path: str, folders: tuple[str, ...]) -> Path | None:
    """The file `path` names inside one of the folders (relative to each, or absolute), or None:
    `..` cannot leave a folder. Links inside a folder are the operator's own and are followed."""
    for folder in folders:
        root = Path(os.path.abspath(folder))
        candidate = Path(os.path.abspath(root / path))  # an absolute `path` stays itself
        if candidate.is_relative_to(root) and is_file(candidate):
            return candidate
    return None


def is_file(path: Path) -> bool:
    """Path.is_file, False for names the OS refuses (too long, a NUL character) instead of raising."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def looks_like_yaml(ref: str) -> bool:
    return "\n" in ref and "tasks" in ref

