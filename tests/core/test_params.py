import textwrap

import pytest

from orchestrator.core.errors import ParametersInvalid
from orchestrator.engine.params import resolve_parameters
from orchestrator.engine.validate import load_workflow

SPEC = load_workflow(textwrap.dedent("""
    version: "1.0"
    parameters:
      app: {type: string, required: true}
      regions: {type: array, items: {type: string}, default: [eu]}
      replicas: {type: integer, default: 2}
      mode: {type: string, enum: [fast, safe], default: safe}
      anything: {}
    tasks:
      - {name: a, action: x}
"""), "p.yaml").spec


def test_defaults_fill_in():
    assert resolve_parameters(SPEC, {"app": "shop"}) == {"app": "shop", "regions": ["eu"], "replicas": 2, "mode": "safe"}


def test_every_problem_listed():
    with pytest.raises(ParametersInvalid) as exc:
        resolve_parameters(SPEC, {"regions": ["eu", 3], "replicas": "2", "mode": "yolo", "colour": 1})
    text = str(exc.value)
    assert "unknown parameter 'colour'" in text
    assert "missing required parameter 'app'" in text
    assert "parameter 'regions[1]': 3 is not of type 'string'" in text
    assert "parameter 'replicas': '2' is not of type 'integer'" in text
    assert "parameter 'mode': 'yolo' is not one of ['fast', 'safe']" in text


def test_untyped_parameter_accepts_anything():
    assert resolve_parameters(SPEC, {"app": "x", "anything": {"a": [1]}})["anything"] == {"a": [1]}


def test_defaults_are_copied_not_shared():
    first = resolve_parameters(SPEC, {"app": "x"})
    first["regions"].append("us")
    assert resolve_parameters(SPEC, {"app": "x"})["regions"] == ["eu"]
