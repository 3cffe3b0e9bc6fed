"""Task graphs of both formats: one format-neutral view, drawn as Mermaid and as dot."""

import re
import textwrap

from orchestrator.engine.graphview import Edge, Node, build_view, render
from orchestrator.engine.validate import load_workflow
from orchestrator.orquesta import load

ORQUESTA = textwrap.dedent("""\
    version: 1.0
    input:
      - x
    tasks:
      start:
        action: core.echo message="hi"
        next:
          - when: <% succeeded() and ctx(x) = "a|b" %>
            do: end, graph
          - when: <% failed() %>
            publish: why=<% result() %>
            do: fail
          - do: retry
      end:
        action: core.noop
        next:
          - do: node2
      graph:
        next:
          - do: node2
      node2:
        join: all
        action: core.local cmd="echo done"
        next:
          - publish: out=1
      lonely:
        action: core.noop
    """)


def test_orquesta_view_has_every_task_action_join_command_and_condition():
    workflow = load(ORQUESTA, "flow.yaml")
    view = workflow.graph.view(workflow.name)
    assert view.name == "flow" and view.entry == ("lonely", "start")
    assert view.nodes == (
        Node("start", "core.echo"), Node("end", "core.noop"), Node("graph"),
        Node("node2", "core.local", "all"), Node("lonely", "core.noop"),
        Node("fail", command=True), Node("retry", command=True), Node("continue", command=True))
    condition = 'succeeded() and ctx(x) = "a|b"'
    assert view.edges == (
        Edge("start", "end", condition), Edge("start", "graph", condition), Edge("start", "fail", "failed()"),
        Edge("start", "retry"), Edge("end", "node2"), Edge("graph", "node2"), Edge("node2", "continue"))


def test_mermaid_escapes_keywords_and_labels():
    workflow = load(ORQUESTA, "flow.yaml")
    text = render(workflow.graph.view(workflow.name), "mermaid")
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    start["start<br/>core.echo"]' in lines
    # `end` and `graph` are Mermaid keywords: other ids, the names stay as labels; `node2` (a
    # task's own name) is not taken by the fresh ids.
    assert '    node2_["end<br/>core.noop"]' in lines
    assert '    node3["graph"]' in lines
    assert '    node2{{"node2<br/>join all<br/>core.local"}}' in lines   # a join: hexagon with its marker
    assert '    lonely["lonely<br/>core.noop"]' in lines                 # a task without transitions
    assert '    fail(("fail"))' in lines and '    continue(("continue"))' in lines
    assert '    start -->|"succeeded() and ctx(x) = #quot;a#124;b#quot;"| node2_' in lines
    assert "    start -->|failed()| fail" in lines and "    start --> retry" in lines
    assert not any(re.match(r"\s+end\b", line) for line in lines)  # `end` never appears bare as an id


def test_dot_quotes_every_id_and_label():
    workflow = load(ORQUESTA, "flow.yaml")
    lines = render(workflow.graph.view(workflow.name), "dot").splitlines()
    assert lines[:2] == ['digraph "flow" {', "    rankdir=TB;"] and lines[-1] == "}"
    assert '    "end" [shape=box, label="end\\ncore.noop"];' in lines
    assert '    "node2" [shape=hexagon, label="node2\\njoin all\\ncore.local"];' in lines
    assert '    "fail" [shape=circle, label="fail"];' in lines
    assert '    "start" -> "end" [label="succeeded() and ctx(x) = \\"a|b\\""];' in lines
    assert '    "graph" -> "node2";' in lines


def test_both_formats_draw_the_same_view():
    workflow = load(ORQUESTA, "flow.yaml")
    view = workflow.graph.view(workflow.name)
    mermaid, dot = render(view, "mermaid"), render(view, "dot")
    assert len(mermaid.splitlines()) == len(dot.splitlines()) - 2 == 1 + len(view.nodes) + len(view.edges)


def test_native_view_with_legacy_transitions_and_commands():
    workflow = load_workflow(textwrap.dedent("""\
        version: "1.0"
        name: deploy
        tasks:
          - name: build
            action: core.shell
            on_failure: [fail]
            next:
              - when: "{{ succeeded() and result.ok }}"
                do: [test, lint]
          - {name: test, action: core.echo, next: [{do: ship}]}
          - {name: lint, action: core.echo, next: [{do: ship}]}
          - {name: ship, action: core.http, join: all}
        """), "deploy.yaml")
    view = workflow.graph.view()
    assert view.name == "deploy" and view.entry == ("build",)
    assert [n for n in view.nodes if n.join] == [Node("ship", "core.http", "all")]
    assert Node("fail", command=True) in view.nodes
    assert Edge("build", "test", "succeeded() and result.ok") in view.edges
    assert Edge("build", "fail", "failed") in view.edges
    assert view.to_dict()["nodes"][0] == {"name": "build", "action": "core.shell", "join": None, "command": False}
    mermaid = render(view, "mermaid")
    assert "    build -->|failed| fail" in mermaid and '    ship{{"ship<br/>join all<br/>core.http"}}' in mermaid


def test_names_mermaid_cannot_take_as_ids():
    view = build_view("w", [Node("a.b"), Node("End"), Node("x-y"), Node("ok")],
                      [Edge("a.b", "End"), Edge("End", "x-y", "a < b"), Edge("x-y", "ok")], ["a.b"])
    lines = render(view, "mermaid").splitlines()
    assert lines[1:5] == ['    node1["a.b"]', '    node2["End"]', '    node3["x-y"]', '    ok["ok"]']
    assert lines[5:] == ["    node1 --> node2", '    node2 -->|"a #lt; b"| node3', "    node3 --> ok"]
