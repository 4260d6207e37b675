"""The README's Python example runs and gives the CLI's numbers."""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

from tilesim.cli.main import main

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_prints_the_cli_numbers():
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert block, "the README has a Python example"
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out):
        exec(block.group(1), namespace)                     # the example exactly as a user would paste it
    cycles, latency_s, energy_pj, utilization = out.getvalue().splitlines()[0].split()
    cli = io.StringIO()
    with contextlib.redirect_stdout(cli):
        assert main(["run", "-w", "resnet50", "-a", "tpu-v1", "-f", "json"]) == 0
    report = json.loads(cli.getvalue())
    assert int(cycles) == report["cycles"]
    assert float(energy_pj) == report["energy_pj"] and float(latency_s) == report["latency_s"]
    assert float(utilization) == report["pe_utilization"]
    assert namespace["result"].to_dict() == report
