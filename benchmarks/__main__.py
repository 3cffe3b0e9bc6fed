"""Command line: ``python -m benchmarks [NAME] [OPTIONS]``.

With a registered NAME first, runs that benchmark with OPTIONS; otherwise runs every registered
benchmark in order, each given the same OPTIONS (e.g. ``python -m benchmarks --rounds 3``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from . import BENCHMARKS, TOOLS, harness

USAGE = f"""usage: python -m benchmarks [NAME] [OPTIONS]

Runs NAME, or every benchmark when NAME is omitted. OPTIONS go to each benchmark
(`python -m benchmarks NAME --help` lists them).

benchmarks: {", ".join(BENCHMARKS)}
run only when named: {", ".join(TOOLS)}"""


def run(name: str, argv: Sequence[str]) -> int:
    module = importlib.import_module(BENCHMARKS.get(name) or TOOLS[name])
    return module.main(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    harness.interrupt_on_termination()
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv and not argv[0].startswith("-"):
        if argv[0] not in BENCHMARKS and argv[0] not in TOOLS:
            print(f"unknown benchmark {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
            return 2
        return run(argv[0], argv[1:])
    status = 0
    for index, name in enumerate(BENCHMARKS):
        if index:
            print()
        status = max(status, run(name, argv))
    return status


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130)
