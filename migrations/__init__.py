"""Alembic migrations for the orchestrator's schema (run with `orchestrator db upgrade`)."""
