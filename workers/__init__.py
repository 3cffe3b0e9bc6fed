"""Celery side of the orchestrator: the app, its configuration and the built-in actions."""
