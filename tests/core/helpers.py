import textwrap

from orchestrator.engine.rehearsal import rehearse, script
from orchestrator.engine.validate import load_workflow


def wf(text: str, **kwargs):
    return load_workflow(textwrap.dedent(text), "test.yaml", default_name="test", **kwargs)


def run(text: str, params=None, **behaviour):
    return rehearse(wf(text), params or {}, script(**behaviour))
