"""Arch loading: presets, strict YAML (unknown/duplicate keys, types, units), --set overrides, validation."""
from __future__ import annotations

import pytest
import yaml
from archs import tiny_arch_dict

from tilesim.arch import InputError, apply_overrides, arch_from_dict, arch_to_dict, load_arch, preset_names
from tilesim.arch.loader import load_yaml_text, raw_arch
from tilesim.arch.units import parse_bytes, parse_hz


def test_presets_load_with_design_numbers():
    assert preset_names() == ["edge-npu", "eyeriss", "gemmini", "h100", "h200", "phone-npu", "tpu-v1", "tpu-v4"]
    h100 = load_arch("h100")       # 132 SMs x 2048 bf16 MACs/cycle = 989 TFLOP/s at the 1.83 GHz spec clock
    assert h100.peak_macs_per_cycle * 1.83e9 * 2 == pytest.approx(989.4e12, rel=0.01)
    assert h100.cache is not None and h100.cache.capacity_bytes == 50 * 2**20
    v1 = load_arch("tpu-v1")
    assert (v1.array.rows, v1.array.cols, v1.array.dataflow) == (256, 256, "ws")
    assert v1.peak_macs_per_cycle * v1.clock_hz * 2 == pytest.approx(92e12, rel=0.01)      # 92 TOPS
    assert v1.offchip.bandwidth_bytes_per_cycle * v1.clock_hz == pytest.approx(34e9)
    assert v1.home("input").capacity_bytes == 24 * 2**20
    v4 = load_arch("tpu-v4")
    assert 2 * v4.peak_macs_per_cycle * 2 * v4.clock_hz == pytest.approx(275e12, rel=0.01)  # 2 cores
    ey = load_arch("eyeriss")
    assert ey.array.rows * ey.array.cols == 168 and ey.home("input").capacity_bytes == 108_000
    gem = load_arch("gemmini")
    assert gem.home("input").capacity_bytes == gem.home("output").capacity_bytes == 128 * 1024
    assert gem.offchip.bandwidth_bytes_per_cycle == 16


def test_every_preset_entry_has_a_source():
    for name in preset_names():
        arch = load_arch(name)
        assert all(e.source for e in arch.energy.actions.values()), name
        assert arch.energy.static_source or arch.energy.static_mw == 0


def test_round_trip_through_a_mapping():
    arch = load_arch("gemmini")
    assert arch_from_dict(arch_to_dict(arch)) == arch


def test_units():
    assert parse_bytes("24 MiB") == 24 * 2**20
    assert parse_bytes("108 KB") == 108_000
    assert parse_hz("1.05 GHz") == 1.05e9
    with pytest.raises(ValueError, match="unit"):
        parse_bytes("12 parsecs")


def test_duplicate_keys_are_rejected():
    with pytest.raises(InputError, match="line 2: duplicate key 'a'"):
        load_yaml_text("a: 1\na: 2\n", "x.yaml")


def test_malformed_yaml_names_the_line():
    with pytest.raises(InputError, match=r"x.yaml: line \d+: malformed YAML"):
        load_yaml_text("a: [1, 2\nb: 3\n", "x.yaml")


def test_every_problem_is_reported_by_dotted_path():
    d = tiny_arch_dict()
    d["array"]["rowz"] = 4
    d["array"]["dataflow"] = "rs"
    d["memory"][1]["capacity_bytes"] = "lots"
    with pytest.raises(InputError) as e:
        arch_from_dict(d)
    msg = str(e.value)
    assert "array.rowz: unknown field (did you mean 'rows'?)" in msg
    assert "array.dataflow: got 'rs', allowed: ws, os, is" in msg
    assert "memory[1].capacity_bytes" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("field, value, expected", [
    (("array", "rows"), 0, "array.rows: must be between 1 and 65536"),
    (("clock_hz",), 0, "clock_hz: must be > 0"),
    (("vector", "lanes"), -3, "vector.lanes"),
])
def test_impossible_sizes(field, value, expected):
    d = tiny_arch_dict()
    node = d
    for f in field[:-1]:
        node = node[f]
    node[field[-1]] = value
    with pytest.raises(InputError, match=expected):
        arch_from_dict(d)


def test_each_operand_needs_one_home():
    d = tiny_arch_dict()
    d["memory"][1]["holds"] = ["input", "weight"]
    with pytest.raises(InputError, match="operand 'output' needs exactly one on-chip level"):
        arch_from_dict(d)


def test_set_overrides_by_dotted_path_and_level_name():
    arch = load_arch("tpu-v1", ["array.rows=128", "array.dataflow=os", "memory.dram.bandwidth_gb_s=68",
                                "memory.unified_buffer.capacity_bytes=8 MiB"])
    assert arch.array.rows == 128 and arch.array.dataflow == "os"
    assert arch.offchip.bandwidth_bytes_per_cycle * arch.clock_hz == pytest.approx(68e9)
    assert arch.home("input").capacity_bytes == 8 * 2**20


@pytest.mark.parametrize("item, expected", [
    ("array.rowz=3", "no field 'rowz' (did you mean 'rows'?)"),
    ("memory.dramm.capacity_bytes=1", "no memory level 'dramm' (did you mean 'dram'?)"),
    ("array.rows", "expected KEY=VALUE"),
    ("clock_hz.x=1", "is a value, not a group"),
])
def test_set_on_missing_field_is_an_error(item, expected):
    raw, _ = raw_arch("tpu-v1")
    with pytest.raises(InputError, match=expected.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        apply_overrides(raw, [item])


def test_unknown_preset_suggests_a_name():
    with pytest.raises(InputError, match="did you mean 'tpu-v4'"):
        load_arch("tpu-v5")


def test_arch_yaml_file(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(tiny_arch_dict(rows=8)))
    assert load_arch(str(p)).array.rows == 8


@pytest.mark.parametrize("table, words", [([{"up_to": 0, "passes": 2}], "row_passes[0].up_to: must be between 1"),
                                          ([{"up_to": 8, "passes": 0.5}], "row_passes[0].passes: must be between 1"),
                                          ([{"up_to": 8}], "row_passes[0].passes: required"),
                                          ("x", "vector.row_passes: expected a list")])
def test_bad_row_passes_tables_name_the_entry(table, words):
    d = tiny_arch_dict()
    d["vector"]["row_passes"] = table
    with pytest.raises(InputError, match=words.replace("[", r"\[").replace("]", r"\]")):
        arch_from_dict(d)
