"""Does the README's first command work every time? The supply-chain demo, run after run.

    python -m bench.demo --runs 20        # each run in a fresh folder, one after the other

Runs `aaex demo supply-chain` (the installed console script beside this Python, or
`python -m marketplace.cli` without it) `--runs` times, each in a new temporary folder, and
prints per run its exit code, wall time and the last line it wrote when it failed; then a
summary table and, last, one JSON object: runs, failures, exit codes, median / max / each
wall time in seconds. A run that exceeds `--timeout` is killed and counts as a failure
(exit code None). The folders are kept when a run fails (their path is printed), so a
failure can be read afterwards; a passing run's folder is removed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import aligned, percentile, progress


def _command() -> list[str]:
    script = Path(sys.executable).with_name("aaex")
    if script.exists():
        return [str(script), "demo", "supply-chain"]
    return [sys.executable, "-m", "marketplace.cli", "demo", "supply-chain"]


def run_once(timeout: float) -> dict[str, Any]:
    """One demo in a fresh folder: exit code (None: killed at `timeout`), wall seconds."""
    folder = Path(tempfile.mkdtemp(prefix="aaex-demo-"))
    started = time.monotonic()
    try:
        done = subprocess.run(_command(), cwd=folder, capture_output=True, text=True,
                              timeout=timeout, check=False)
        code: int | None = done.returncode
        tail = (done.stderr.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        code, tail = None, f"killed after {timeout:.0f} s"
    wall = time.monotonic() - started
    if code == 0:
        shutil.rmtree(folder, ignore_errors=True)
        return {"exit": code, "wall_s": round(wall, 1), "folder": None, "last_line": ""}
    return {"exit": code, "wall_s": round(wall, 1), "folder": str(folder), "last_line": tail}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds before a run is killed and counted as failed")
    args = parser.parse_args(argv)
    runs = []
    for n in range(1, args.runs + 1):
        result = run_once(args.timeout)
        runs.append(result)
        progress(f"run {n}/{args.runs}: exit {result['exit']}, {result['wall_s']:.1f} s"
                 + (f" ({result['last_line']}; files in {result['folder']})"
                    if result["exit"] != 0 else ""))
    walls = [r["wall_s"] for r in runs]
    failures = [r for r in runs if r["exit"] != 0]
    print(aligned([["run", "exit", "wall s"]] + [
        [str(n), str(r["exit"]), f"{r['wall_s']:.1f}"] for n, r in enumerate(runs, 1)]))
    print()
    print(aligned([["runs", "failed", "median s", "max s"],
                   [str(len(runs)), str(len(failures)), f"{percentile(walls, 50):.1f}",
                    f"{max(walls):.1f}"]], left=0))
    print(json.dumps({"bench": "demo", "runs": len(runs), "failures": len(failures),
                      "exit_codes": [r["exit"] for r in runs],
                      "median_wall_s": round(percentile(walls, 50), 1),
                      "max_wall_s": max(walls), "wall_s": walls,
                      "failed": [{"exit": r["exit"], "last_line": r["last_line"],
                                  "folder": r["folder"]} for r in failures]}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
