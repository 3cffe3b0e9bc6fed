"""Orquesta-format states stored by earlier versions, read into the current shape, so runs in
progress when a deployment upgrades go on. ``load_state`` reads any shape:

- version 3 (current): as written by OrquestaState.to_dict;
- version 2: items in flight were a mapping (item -> attempt);
- the first shape (no version): every execution in a `sequence` list, `tasks` and `prev`
  holding sequence indexes, item values and results in the records.
"""

from __future__ import annotations

from typing import Any

from .items import from_first_shape as items_from_first_shape, upgrade
from .state import OrquestaState, link, record_key


def load_state(data: dict[str, Any], variables: dict[str, Any] | None = None) -> OrquestaState:
    """A stored state of any shape (takes ownership of `data`, as OrquestaState.from_dict)."""
    if "records" not in data:
        data = _from_first_shape(data)
    elif data.get("version") == 2:
        for record in data["records"]:
            if record.get("items") is not None:
                upgrade(record["items"])
    return OrquestaState.from_dict(data, variables)


def _from_first_shape(data: dict[str, Any]) -> dict[str, Any]:
    """A state written before records were pruned: every execution in `sequence` (seq = index
    + 1), `tasks` and `prev` holding sequence indexes, item values and results in the records.
    Returns the current shape (only the latest and terminal records kept)."""
    data = dict(data)
    sequence = data.pop("sequence", [])

    def key_at(index: int) -> str:
        return record_key(sequence[index])

    for record in sequence:
        record["prev"] = {backref: key_at(index) for backref, index in record.get("prev", {}).items()}
    for entry in data.get("staged", []):
        entry["prev"] = {backref: key_at(index) for backref, index in entry.get("prev", {}).items()}
    tasks = {key: index + 1 for key, index in data.get("tasks", {}).items()}
    latest = set(tasks.values())
    records = []
    links: dict[str, list[str]] = {}
    for record in sequence:
        if record["seq"] in latest or record.get("term"):
            record.pop("result", None)
            if record.get("items") is not None:
                record["items"] = items_from_first_shape(record["items"])
            records.append(record)
        else:
            link(links, record)
    data.update(records=records, tasks=tasks, links=links, next_seq=len(sequence) + 1)
    return data
