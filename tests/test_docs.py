"""The README's promises: its quick start runs, and its two commands are what CI runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_quick_start_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no python example"
    result = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert "text='tea: 2.5'" in result.stdout  # the handler reached its typed ctx.deps


def test_readme_has_the_two_commands_ci_runs() -> None:
    commands = [line for line in README.splitlines()
                if line.startswith("python3 -m venv .venv && ")]
    assert len(commands) == 2
    demo, tests = commands
    assert '".[cpu,demo]"' in demo and demo.endswith(".venv/bin/aaex demo supply-chain")
    # the real CPU model and the supply-chain solvers run in the tests
    assert "pytest" in tests and '".[cpu,dev,demo]"' in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert "grep -E '^python3 -m venv \\.venv && ' README.md" in ci
    # The second step, vLLM on CPU, is in CI and documented in the README.
    assert "pytest -m vllm" in ci and "pytest -m vllm" in README


def test_echo_pair_example_runs() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "echo_pair.py")],
                            capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert "refused, reason 'replayed'" in result.stdout
    assert "refused, reason 'bad_signature'" in result.stdout
    assert "echo process exited with 0" in result.stdout
