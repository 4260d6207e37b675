"""The bad-input catalogue (tests/bad_inputs/cases.yaml): every case exits 2 with one line and leaves nothing behind."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tilesim.cli.main import main

CASES = yaml.safe_load((Path(__file__).parent / "bad_inputs" / "cases.yaml").read_text())


def test_the_catalogue_is_large_and_names_are_unique():
    names = [c["name"] for c in CASES]
    assert len(names) >= 40 and len(set(names)) == len(names)
    print(f"\n{len(CASES)} bad inputs in the catalogue")


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = list(case["args"])
    if "file" in case:
        path = tmp_path / case["file"]["name"]
        path.write_text(case["file"]["text"])
        args = [str(path) if a == "{file}" else a for a in args]
    out = tmp_path / "out.json"
    if args and args[0] in ("run", "compare") and "-o" not in args:
        args += ["-o", str(out)]
    before = set(tmp_path.iterdir())
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, f"exit {code}: {err}"
    assert err.startswith("tilesim: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert case["expect"] in err, err
    assert set(tmp_path.iterdir()) == before          # nothing half-written
