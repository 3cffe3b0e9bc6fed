"""The pure native format: parse, validate, build the graph, evaluate expressions and conduct runs
(the run control both formats share is orchestrator/core/).

Nothing in this package imports Celery, SQLAlchemy, a clock or does I/O beyond reading the text it
is handed, so every decision the orchestrator makes can be tested in microseconds.
"""
