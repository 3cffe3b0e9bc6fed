"""The pure engine: parse, validate, build the graph, evaluate expressions and conduct runs.

Nothing in this package imports Celery, SQLAlchemy, a clock or does I/O beyond reading the text it
is handed, so every decision the orchestrator makes can be tested in microseconds.
"""
