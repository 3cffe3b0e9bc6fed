"""Durable state in PostgreSQL (SQLite in embedded mode): schema, engine and the run store."""

from .database import Database, database
from .runs import RunStore

__all__ = ["Database", "database", "RunStore"]
