"""`orchestrator rehearse FILE`: unit-test workflows against scripted outcomes, no broker needed.

Prints one line per case (``PASS name`` or ``FAIL name: <differences>``) at the chosen level,
then the totals of every level, then exactly ``N passed, M failed`` for the chosen level (strict
unless ``--level`` says otherwise). Exit code 0 only when every case passes at that level; 1
otherwise; 2 when the file cannot be read. ``--json`` prints the machine report instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .orquesta.cases import LEVELS, CaseFileError, rehearse_cases


def rehearse_command(cases_file: Path, as_json: bool, level: str) -> None:
    """Run the cases of `cases_file` and report; raises typer.Exit with the exit code."""
    from .cli import Usage

    if level not in LEVELS:
        raise Usage(f"--level must be one of {', '.join(LEVELS)}, not {level!r}")
    try:
        report = rehearse_cases(cases_file)
    except CaseFileError as exc:
        raise Usage(str(exc)) from None
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
    raise typer.Exit(0 if totals[level]["failed"] == 0 else 1)
