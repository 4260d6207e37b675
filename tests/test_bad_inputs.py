"""The bad-input catalogue (tests/bad_inputs/cases.yaml): every case exits 2 with one line and leaves nothing behind."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tilesim.arch import InputError
from tilesim.arch.loader import MAX_YAML_DEPTH, MAX_YAML_NODES, load_yaml_text
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


# ---------------------------------------------------------------- issue 21: reproducers that exited 1 or ran away
# Each: (name, args, files {name: bytes}, expected text). They exited 1 ("internal error"), ran out of memory or ran
# for minutes (items 6 and 8), or were accepted with another meaning (item 10).

def _laughs(levels: int = 10) -> bytes:
    """A 'billion laughs' YAML: each level lists the previous one nine times (9**10 values when expanded)."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


def _hf(**change) -> bytes:
    raw = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 128, "vocab_size": 256} | change
    return json.dumps(raw).encode()


PRESET = (Path(__file__).parent.parent / "arch" / "presets" / "edge-npu.yaml").read_text()
DW = b"Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n" \
     b"DPconv, 3, 3, 3, 3, 1000000, 1, 1,\n"
GEMM = ["-w", "gemm:8,8,8"]
ISSUE21 = [
    ("billion laughs", ["run", "-a", "{a.yaml}", *GEMM], {"a.yaml": _laughs()},
     "once its aliases (*name) are expanded"),
    ("yaml over 1 MiB", ["run", "-a", "{a.yaml}", *GEMM], {"a.yaml": b"# x\n" * 300_000}, "a YAML input may have"),
    ("non-utf8 yaml", ["run", "-a", "{a.yaml}", *GEMM], {"a.yaml": b"name: \xff\xfe\n"}, "not UTF-8 text"),
    ("unhashable yaml key", ["run", "-a", "{a.yaml}", *GEMM], {"a.yaml": b"? [a, b]\n: 1\n"},
     "a mapping key must be a scalar"),
    ("yaml nested 2000 deep", ["run", "-a", "{a.yaml}", *GEMM], {"a.yaml": b"[" * 2000 + b"]" * 2000},
     "nested more than 64 levels deep"),
    ("yaml nested 100 deep", ["run", "-a", "{a.yaml}", *GEMM], {"a.yaml": b"a: " + b"[" * 100 + b"]" * 100},
     "nested more than 64 levels deep"),
    ("yaml integer of 5000 digits", ["run", "-a", "{a.yaml}", *GEMM], {"a.yaml": b"rows: " + b"9" * 5000},
     "malformed YAML"),
    ("set integer of 5000 digits", ["run", *GEMM, "--set", "array.rows=" + "9" * 5000], {}, "malformed YAML"),
    ("sexagesimal rows", ["run", "-a", "{a.yaml}", *GEMM],
     {"a.yaml": PRESET.replace("rows: 32", "rows: 1:30").encode()}, "array.rows: expected an integer, got '1:30'"),
    ("set sexagesimal", ["run", *GEMM, "--set", "array.rows=1:30"], {}, "expected an integer, got '1:30'"),
    ("area node 1e308", ["run", *GEMM, "--set", "area.node_nm=1e308"], {}, "area.node_nm: must be > 0, between 0.1"),
    ("energy node 1e308", ["run", *GEMM, "--set", "energy.defaults.node_nm=1e308"], {},
     "energy.defaults.node_nm: must be a finite number > 0, between"),
    ("infinite capacity", ["run", *GEMM, "-a", "edge-npu", "--set", "memory.dram.capacity_bytes=.inf"], {},
     "capacity_bytes: expected a finite number of bytes"),
    ("hf list-valued hidden_act", ["run", "-w", "{c.json}"], {"c.json": _hf(hidden_act=["silu"])},
     "hidden_act must be a string"),
    ("hf list-valued model_type", ["run", "-w", "{c.json}"], {"c.json": _hf(model_type=["llama"])},
     "model_type must be a string"),
    ("hf list-valued max_window_layers", ["run", "-w", "{c.json}"],
     {"c.json": _hf(model_type="qwen2", use_sliding_window=True, sliding_window=8, max_window_layers=[1])},
     "max_window_layers must be an integer between 0"),
    ("hf list-valued layer_types", ["run", "-w", "{c.json}"], {"c.json": _hf(layer_types=[[1], [2]])},
     "layer_types must list"),
    ("hf huge integer", ["run", "-w", "{c.json}"], {"c.json": _hf(vocab_size=10**30)}, "vocab_size must be at most"),
    ("hf integer of 5000 digits", ["run", "-w", "{c.json}"], {"c.json": b'{"hidden_size": ' + b"9" * 5000 + b"}"},
     "cannot read"),
    ("hf nested 100000 deep", ["run", "-w", "{c.json}"], {"c.json": b"[" * 100_000 + b"]" * 100_000},
     "nested too deeply"),
    ("hf 100000 layers", ["run", "-w", "{c.json}"], {"c.json": _hf(num_hidden_layers=100_000)},
     "100,000 layers, more than the 1,024"),
    ("topology of a million kernels", ["run", "-a", "edge-npu", "-w", "{t.csv}"], {"t.csv": DW},
     "1,000,000 kernels"),
    ("attention seq 100000", ["run", "-w", "attention", "--seq-len", "100000", "-a", "edge-npu"], {},
     "in at most 4,000,000 steps of the cores"),
    ("compare checks the DRAM fit", ["compare", "-w", "llama2-7b", "-a", "edge-npu", "--seq-len", "64"], {},
     "memory.dram.capacity_bytes: the workload's weights (6.28 GiB)"),
    ("validate-array checks the DRAM fit", ["validate-array", "-w", "llama2-7b", "-a", "edge-npu", "--seq-len",
                                            "64"], {}, "memory.dram.capacity_bytes: the workload's weights"),
    ("run of a CNN checks the DRAM fit", ["run", "-w", "vgg16", "-a", "edge-npu", "--set",
                                          "memory.dram.capacity_bytes=1 MiB"], {}, "more than the 1.00 MiB"),
    ("seq-len 0", ["run", "-w", "gpt2", "--seq-len", "0"], {}, "--seq-len: must be >= 1, got 0"),
    ("batch 0", ["run", "-w", "gpt2", "--batch", "0"], {}, "--batch: must be >= 1, got 0"),
    ("max-macs -1", ["validate-array", "-w", "gemm:8,8,8", "-a", "edge-npu", "--max-macs", "-1"], {},
     "--max-macs: must be >= 1"),
    ("max-macs below every GEMM", ["validate-array", "-w", "gemm:8,8,8", "-a", "edge-npu", "--max-macs", "1"], {},
     "no GEMM to check"),
    ("run -o DIR", ["run", *GEMM, "-o", "{dir}"], {}, "is a directory; give a file name"),
    ("sweep -o DIR", ["sweep", *GEMM, "--grid", "array.rows=8,16", "--jobs", "1", "-o", "{dir}"], {},
     "is a directory; give a file name"),
]


@pytest.mark.parametrize("args, files, expect", [c[1:] for c in ISSUE21], ids=[c[0] for c in ISSUE21])
def test_issue21_reproducers(tmp_path, capsys, monkeypatch, args, files, expect):
    monkeypatch.chdir(tmp_path)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    args = [str(tmp_path) if a == "{dir}" else str(tmp_path / a[1:-1]) if a[1:-1] in files else a for a in args]
    before = set(tmp_path.iterdir())
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, f"exit {code}: {err}"
    assert err.startswith("tilesim: error: ") and err.count("\n") == 1 and len(err) < 600, err
    assert expect in err, err
    assert set(tmp_path.iterdir()) == before


def test_yaml_limits_hold_at_their_bounds():
    deep = MAX_YAML_DEPTH
    assert load_yaml_text("[" * deep + "]" * deep, "t") is not None             # exactly the depth: read
    with pytest.raises(InputError, match="nested more than"):
        load_yaml_text("[" * (deep + 1) + "]" * (deep + 1), "t")
    flat = MAX_YAML_NODES - 1                                                  # the list itself is one value
    assert len(load_yaml_text("[" + "1," * flat + "]", "t")) == flat
    with pytest.raises(InputError, match="once its aliases"):
        load_yaml_text("[" + "1," * (flat + 1) + "]", "t")
    # aliases count as often as they are used: 3 x a list of 40,000 is 120,003 values
    with pytest.raises(InputError, match="once its aliases"):
        load_yaml_text("a: &a [" + "1," * 40_000 + "]\nb: [*a, *a]\n", "t")


def test_yaml_keeps_its_other_implicit_types_without_base_60():
    doc = load_yaml_text("a: 1_000\nb: 0x10\nc: 1.5\nd: .inf\ne: 1:30\nf: 190:20:30\ng: true\nh: null\ni: -7\n"
                         "j: 1e3\nk: 2001-12-14\n", "t")
    assert doc["a"] == 1000 and doc["b"] == 16 and doc["c"] == 1.5 and doc["d"] == float("inf")
    assert doc["e"] == "1:30" and doc["f"] == "190:20:30"                      # YAML 1.1 read 90 and 685230
    assert doc["g"] is True and doc["h"] is None and doc["i"] == -7 and doc["j"] == "1e3"
    assert str(doc["k"]) == "2001-12-14"


def test_a_non_utf8_mapping_file_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_bytes(b"a: \xff\n")
    assert main(["run", "-w", "gemm:8,8,8", "--mapping", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--mapping: cannot read" in err and "not UTF-8 text" in err, err
