"""`orchestrator rehearse FILE`: unit-test workflows against scripted outcomes, no broker needed.

Prints one line per case (``PASS name`` or ``FAIL name: <differences>``) at the chosen level,
then the totals of every level, then exactly ``N passed, M failed`` for the chosen level (strict
unless ``--level`` says otherwise). Exit code 0 only when every case passes at that level; 1
otherwise; 2 when the file cannot be read (cli.py turns CaseFileError into that).

The shell's part of rehearsing: reading the case file and the workflow files its cases name;
judging them is orchestrator/cases.py, which reads no file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .cases import LEVELS, CaseFileError, parse_cases, rehearse_cases


def read_cases(path: str | Path) -> list[dict[str, Any]]:
    """The cases of a rehearsal file, with each workflow named by path read in (as
    ``workflow_yaml``, ``workflow_source``); CaseFileError when a file cannot be read."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    cases = parse_cases(text, str(path), as_json=path.suffix == ".json")
    for case in cases:
        ref = case.get("workflow")
        if case.get("workflow_yaml") or not isinstance(ref, str):
            continue
        workflow = (path.parent / ref).resolve()
        try:
            case["workflow_yaml"], case["workflow_source"] = workflow.read_text(), str(workflow)
        except (OSError, UnicodeDecodeError) as exc:
            raise CaseFileError(f"case '{case['name']}': cannot read workflow {ref}: "
                                f"{getattr(exc, 'strerror', None) or exc}") from None
    return cases


def rehearse_command(cases_file: Path, as_json: bool, level: str) -> int:
    """Run the cases of `cases_file`, print the report and return the exit code; raises
    CaseFileError for a file that cannot be used or an unknown level."""
    if level not in LEVELS:
        raise CaseFileError(f"--level must be one of {', '.join(LEVELS)}, not {level!r}")
    report = rehearse_cases(read_cases(cases_file), str(cases_file))
    totals = report.totals()
    if as_json:
        print(json.dumps({**report.to_dict(), "level": level}, indent=2, default=str))
    else:
        for case in report.cases:
            if case.passed[level]:
                print(f"PASS {case.name}")
            else:
                print(f"FAIL {case.name}: " + "; ".join(case.diffs[level]))
        total = len(report.cases)
        print(" · ".join(f"{name}: {totals[name]['passed']}/{total} passed" for name in LEVELS))
        print(f"{totals[level]['passed']} passed, {totals[level]['failed']} failed")
    return 0 if totals[level]["failed"] == 0 else 1
