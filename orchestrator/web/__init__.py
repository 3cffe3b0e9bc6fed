"""Static assets of the web view (served by orchestrator.http.web via importlib.resources)."""
