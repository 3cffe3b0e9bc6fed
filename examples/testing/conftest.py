"""Enable the orchestrator's pytest plugin (one line), and tell its worker where this project's
actions and workflows are."""

from pathlib import Path

import pytest

pytest_plugins = ["orchestrator.testing"]

HERE = Path(__file__).parent


@pytest.fixture
def orchestrator_settings():
    return {"ORCHESTRATOR_ACTIONS": "shop_actions", "ORCHESTRATOR_WORKFLOWS": str(HERE / "workflows")}
