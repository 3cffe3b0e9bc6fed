"""The pure core both workflow formats share: events and commands, status names, timer keys, the
facts a run is conducted with, and the one run control (pause, resume, cancel, core.ask, call
watches, input limits, fan-in marking). No Celery, database, clock or files."""
