"""Finding a Celery app by its reference (`module:attribute`, as `celery -A` does): the app
ORCHESTRATOR_APP or `orchestrator --app` names, and the standalone app (workers/app.py), which is
found the same way by its own reference. An app found here must have had `orchestrator.install(app)`
called on it (the one line in the team's `proj/celery.py`; workers/app.py does it for itself)."""

from __future__ import annotations

from importlib import import_module

from celery import Celery

STANDALONE = "workers.app:app"  # the app `orchestrator worker` and the embedded runner use


def find_app(reference: str, setting: str = "ORCHESTRATOR_APP") -> Celery:
    """The installed app named by `module:attribute` (or `module`, whose `app` or `celery` it is);
    ValueError with one line naming the reference when there is none."""
    module_name, _, attribute = reference.partition(":")
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{setting}={reference!r}: cannot import {module_name!r}: {exc}") from None
    for name in [attribute] if attribute else ["app", "celery"]:
        found = module
        for part in name.split("."):
            found = getattr(found, part, None)
        if callable(found) and not isinstance(found, Celery) and attribute:
            found = found()  # an app factory
        if isinstance(found, Celery):
            if getattr(found, "_orchestrator_installed", None) is None:
                raise ValueError(f"{setting}={reference!r}: the app has not been installed: call "
                                 f"orchestrator.install(app) in {module_name!r} where the app is made")
            return found
    raise ValueError(f"{setting}={reference!r}: no Celery app found there "
                     f"(expected module:attribute, e.g. proj.celery:app)")
