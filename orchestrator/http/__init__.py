"""HTTP API, web view and Prometheus metrics (FastAPI); see app.py."""

from .app import create_app

__all__ = ["create_app"]
