"""The pure conductors side by side: ours, our Orquesta front end, and StackStorm Orquesta's own.

Each workflow shape is conducted in-process, every call succeeding at once, one event per
completed call (see conductor_driver.py for exactly how each engine is driven):

- ``ours``: orchestrator.engine's Conductor on our format (what the supervisor runs per step)
- ``ours-orquesta``: orchestrator.orquesta's OrquestaConductor on Orquesta's native format
- ``orquesta``: StackStorm's ``orquesta`` package (PyPI) on the same Orquesta text. It is never a
  project dependency: it lives in its own virtual environment, ``benchmarks/.venv-orquesta``
  (gitignored), created on first use with ``pip install orquesta==1.2.0`` and driven as a
  subprocess. If it cannot be installed, the benchmark says so and measures our side only.

Shapes: ``sequential`` (N distinct tasks in a chain), ``loop`` (one task N times, counted in a
variable), ``with_items`` (N items at once), ``splits`` (N chained fork/join pairs). Two modes:
``memory`` (one state object throughout: the conductor alone) and ``stored`` (the state through
JSON after every event, as a shell that stores it between steps; with_items is left out there,
since our shell applies a fan-in's completions as one batch).

Every (engine, shape, mode) runs in a fresh process, sizes in increasing order; a size predicted
to exceed ``--cap`` seconds is skipped and reported, and a process that overruns is killed.
Targets (issue 6, printed, never asserted): ours conducts 10,000 sequential tasks and 10,000
items in under 1 s each, and 25 chained splits without blow-up.

    python -m benchmarks conductor [--cap 20] [--rounds 3] [--modes memory,stored] [--no-orquesta]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import harness

NAME = "conductor"
DRIVER = Path(__file__).resolve().with_name("conductor_driver.py")
ORQUESTA_VENV = Path(__file__).resolve().parent / ".venv-orquesta"
ORQUESTA_REQUIREMENT = "orquesta==1.2.0"  # the last release on PyPI
ENGINES = ("ours", "ours-orquesta", "orquesta")
SHAPES = {
    "sequential": ("N distinct tasks, t1 -> t2 -> ... -> tN", [100, 200, 400, 1000, 2000, 4000, 10_000]),
    "loop": ("one task run N times by a counter (init + N calls)", [100, 200, 400, 1000, 2000, 4000, 10_000]),
    "with_items": ("one task over N items, all in flight at once", [100, 200, 500, 1000, 2000, 4000, 10_000]),
    "splits": ("N chained fork/join pairs (1 + 3N calls)", [4, 8, 12, 25, 50, 100]),
}
STORED_SHAPES = ("sequential", "loop", "splits")
MODES = ("memory", "stored")


@dataclass
class Series:
    """One engine's results on one shape in one mode: a row per size, as the driver printed it."""

    engine: str
    shape: str
    mode: str
    rows: dict[int, dict] = field(default_factory=dict)
    note: str | None = None   # why nothing (more) was measured


# --------------------------------------------------------------------------- Orquesta's environment

def _probe(python: str) -> tuple[dict | None, str]:
    """({version, python} or None, error text) for an interpreter expected to import orquesta."""
    try:
        probe = subprocess.run([python, str(DRIVER), "orquesta", "probe"], capture_output=True, text=True,
                               timeout=120, cwd=harness.ROOT)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot run {python}: {exc}"
    if probe.returncode != 0:
        return None, " | ".join(probe.stderr.strip().splitlines()[-2:])
    return json.loads(probe.stdout.strip().splitlines()[-1]), ""


def _install(python: str) -> str:
    """Create benchmarks/.venv-orquesta if needed and pip-install orquesta into it; '' or why not."""
    print(f"installing {ORQUESTA_REQUIREMENT} into {ORQUESTA_VENV.relative_to(harness.ROOT)} (once) ...",
          flush=True)
    try:
        if not Path(python).exists():
            subprocess.run([sys.executable, "-m", "venv", str(ORQUESTA_VENV)], check=True,
                           capture_output=True, text=True, timeout=300)
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        ORQUESTA_REQUIREMENT], check=True, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        output = getattr(exc, "stderr", None) or getattr(exc, "stdout", None) or str(exc)
        return " | ".join(line for line in str(output).strip().splitlines()[-3:])
    return ""


def orquesta_python(explicit: str | None) -> tuple[str | None, str]:
    """(interpreter that imports orquesta, description) or (None, why not). Without `explicit`,
    uses benchmarks/.venv-orquesta, creating it and installing orquesta==1.2.0 when it does not
    import there yet."""
    python = explicit or str(ORQUESTA_VENV / "bin" / "python")
    facts, error = _probe(python) if Path(python).exists() or explicit else (None, "no such interpreter")
    if facts is None and not explicit:
        problem = _install(python)
        if problem:
            return None, f"could not install {ORQUESTA_REQUIREMENT} into {ORQUESTA_VENV.name}: {problem}"
        facts, error = _probe(python)
    if facts is None:
        return None, f"orquesta does not import in {python}: {error}"
    return python, f"orquesta {facts['version']} on Python {facts['python']} ({python})"


# --------------------------------------------------------------------------- running the driver

def run_series(engine: str, python: str, shape: str, mode: str, sizes: Sequence[int], cap: float,
               rounds: int, timeout: float) -> Series:
    """Run the driver for one engine/shape/mode in a fresh process; kill it when one size takes
    longer than `timeout` seconds."""
    series = Series(engine, shape, mode)
    args = [python, str(DRIVER), engine, shape, "--sizes", ",".join(map(str, sizes)), "--cap", str(cap),
            "--rounds", str(rounds)]
    if mode == "stored":
        args.append("--stored")
    env = {**os.environ, "PYTHONPATH": str(harness.ROOT)}
    proc = subprocess.Popen(args, cwd=harness.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()

    def read() -> None:  # lines through a queue, so a silent driver can be timed out
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                done = set(series.rows)
                nxt = next((s for s in sizes if s not in done), None)
                series.note = f"size {nxt}: killed after {timeout:.0f} s"
                break
            if line is None:
                break
            row = json.loads(line)
            series.rows[row["size"]] = row
            if "skipped" not in row:
                print(f"  {engine:<13} {shape:<10} {mode:<6} {row['size']:>6}: load {row['load']:.3f} s, "
                      f"conduct {row['conduct']:.3f} s ({row['status']})", flush=True)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc.returncode not in (0, -signal.SIGKILL) and series.note is None:
        tail = " | ".join(proc.stderr.read().strip().splitlines()[-2:])
        series.note = f"driver failed (exit {proc.returncode}): {tail}"
    return series


# --------------------------------------------------------------------------- report

def cell(row: dict | None) -> str:
    if row is None:
        return "-"
    if "skipped" in row:
        return "skipped"
    if row["status"] != "succeeded" or row["calls"] != row["expected_calls"]:
        return f"WRONG: {row['status']}, {row['calls']}/{row['expected_calls']} calls"
    return f"{row['conduct']:.3f} ({row['load']:.3f})"


def per_call_us(row: dict) -> float:
    return row["conduct"] / row["calls"] * 1e6


def measured(series: Series) -> list[dict]:
    return [r for _, r in sorted(series.rows.items())
            if "skipped" not in r and r["status"] == "succeeded" and r["calls"] == r["expected_calls"]]


def report(results: dict[tuple[str, str, str], Series], engines: Sequence[str], modes: Sequence[str],
           shapes: Sequence[str], labels: dict[str, str]) -> None:
    for mode in modes:
        print()
        if mode == "memory":
            print("IN MEMORY: the conductor alone, one state object for the whole run")
        else:
            print("STORED: the state through JSON after every event (what a step stores and the next loads)")
        print("cells: conduct s (load s); load = parse + validate + graph, conduct = start + every event")
        for shape in shapes:
            if mode == "stored" and shape not in STORED_SHAPES:
                continue
            sizes = sorted({size for engine in engines for size in results[(engine, shape, mode)].rows}
                           | set(SHAPES[shape][1]))
            rows = []
            for size in sizes:
                cells = [cell(results[(engine, shape, mode)].rows.get(size)) for engine in engines]
                if any(c != "-" for c in cells):
                    rows.append([f"{size:,}", *cells])
            print()
            print(f"{shape}: {SHAPES[shape][0]}")
            print(harness.format_table(["N", *(labels[e] for e in engines)], rows))
            for engine in engines:
                series = results[(engine, shape, mode)]
                skipped = [f"{s:,}" for s, r in sorted(series.rows.items()) if "skipped" in r]
                if skipped:
                    first = series.rows[int(skipped[0].replace(",", ""))]["skipped"]
                    print(f"  {labels[engine]}: N = {', '.join(skipped)} not run ({first})")
                if series.note:
                    print(f"  {labels[engine]}: {series.note}")
    # Linearity: cost per call at the largest size each engine managed, over the smallest.
    print()
    print("GROWTH: conduct µs per call at the smallest and the largest N each engine ran (1.0 = linear;")
    print("        engines that ran one size only are left out)")
    rows = []
    for mode in modes:
        for shape in shapes:
            if mode == "stored" and shape not in STORED_SHAPES:
                continue
            for engine in engines:
                done = measured(results[(engine, shape, mode)])
                if len(done) < 2:
                    continue
                small, large = done[0], done[-1]
                rows.append([f"{shape} ({mode})", labels[engine], f"{small['size']:,}", f"{per_call_us(small):.0f}",
                             f"{large['size']:,}", f"{per_call_us(large):.0f}",
                             f"{per_call_us(large) / per_call_us(small):.2f}"])
    print(harness.format_table(["shape (mode)", "engine", "N small", "µs/call", "N large", "µs/call", "large/small"],
                               rows))
    targets = []
    ours = {shape: results.get(("ours", shape, "memory")) for shape in shapes}
    for shape, size in (("sequential", 10_000), ("with_items", 10_000), ("loop", 10_000)):
        row = ours.get(shape) and ours[shape].rows.get(size)
        if row and "skipped" not in row:
            targets.append(f"{shape} {size:,}: {row['conduct']:.2f} s conduct + {row['load']:.2f} s load")
    row = ours.get("splits") and ours["splits"].rows.get(25)
    if row and "skipped" not in row:
        targets.append(f"25 chained splits: {row['conduct'] * 1000:.1f} ms conduct + {row['load'] * 1000:.1f} ms load")
    if targets:
        print()
        print("target (ours, in memory): 10,000 sequential tasks and 10,000 items < 1 s each; 25 chained splits "
              "without blow-up (not asserted)")
        for line in targets:
            print(f"  {line}")


# --------------------------------------------------------------------------- main

def parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks conductor", description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", type=parse_list, default=list(SHAPES),
                        help=f"comma-separated subset of {', '.join(SHAPES)}")
    parser.add_argument("--modes", type=parse_list, default=list(MODES), help="memory, stored or both (default)")
    parser.add_argument("--engines", type=parse_list, default=list(ENGINES), help=f"subset of {', '.join(ENGINES)}")
    for shape, (_, sizes) in SHAPES.items():
        parser.add_argument(f"--{shape.replace('_', '-')}", dest=f"sizes_{shape}", default=sizes,
                            type=lambda t: sorted({int(p) for p in parse_list(t)}),
                            help=f"sizes for {shape} (default {','.join(map(str, sizes))})")
    parser.add_argument("--cap", type=float, default=20.0,
                        help="skip a size predicted to take longer than this many seconds (default 20)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs per size, median; a size that takes over 2 s runs once (default 3)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="kill a driver whose next size takes longer than this (default 4 x cap + 30 s)")
    parser.add_argument("--no-orquesta", action="store_true", help="measure our engines only")
    parser.add_argument("--orquesta-python", default=None,
                        help="an interpreter that already imports orquesta (default: benchmarks/.venv-orquesta)")
    args = parser.parse_args(argv)
    for name, allowed in (("shapes", SHAPES), ("modes", MODES), ("engines", ENGINES)):
        unknown = set(getattr(args, name)) - set(allowed)
        if unknown:
            parser.error(f"unknown {name}: {', '.join(sorted(unknown))}")
    if args.rounds < 1 or args.cap <= 0:
        parser.error("--rounds must be at least 1 and --cap positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print machine facts and the tables; returns the exit code."""
    args = parse_args(argv)
    print(f"== {NAME}: pure conductors in-process, ours vs StackStorm Orquesta's ==")
    harness.print_facts(harness.machine_facts())
    engines = [e for e in ENGINES if e in args.engines]
    pythons = {"ours": sys.executable, "ours-orquesta": sys.executable}
    labels = {"ours": "ours", "ours-orquesta": "ours, Orquesta format", "orquesta": "Orquesta"}
    if "orquesta" in engines:
        if args.no_orquesta:
            engines.remove("orquesta")
        else:
            python, description = orquesta_python(args.orquesta_python)
            print(f"  orquesta    {description}", flush=True)
            if python is None:
                print("  (Orquesta's own conductor is NOT measured in this run)", flush=True)
                engines.remove("orquesta")
            else:
                pythons["orquesta"] = python
                labels["orquesta"] = f"Orquesta {description.split()[1]} (PyPI)"
    timeout = args.timeout or 4 * args.cap + 30
    shapes = [s for s in SHAPES if s in args.shapes]
    modes = [m for m in MODES if m in args.modes]
    results: dict[tuple[str, str, str], Series] = {}
    print(f"cap {args.cap:.0f} s per size, {args.rounds} round(s) per size under 2 s, each engine in a fresh "
          f"process per shape and mode", flush=True)
    for mode in modes:
        for shape in shapes:
            for engine in engines:
                if mode == "stored" and shape not in STORED_SHAPES:
                    results[(engine, shape, mode)] = Series(engine, shape, mode)
                    continue
                results[(engine, shape, mode)] = run_series(engine, pythons[engine], shape, mode,
                                                            getattr(args, f"sizes_{shape}"), args.cap,
                                                            args.rounds, timeout)
    report(results, engines, modes, shapes, labels)
    return 0


if __name__ == "__main__":
    harness.interrupt_on_termination()
    raise SystemExit(main())
