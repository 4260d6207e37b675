"""Writing arch files (issue 28): templates, editable show-arch output, one node setting, plausibility warnings."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import warnings
from pathlib import Path

import pytest
from archs import tiny_arch_dict

from tilesim.arch import InputError, arch_from_dict, load_arch, preset_names
from tilesim.arch.area_model import area_mm2
from tilesim.arch.authoring import TEMPLATES, editable_yaml
from tilesim.arch.config import MemLevel, accepted_keys
from tilesim.arch.errors import ArchWarning
from tilesim.arch.loader import load_yaml_text
from tilesim.arch.reference import reference, sections
from tilesim.cli.main import main


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def _energy_pj(arch: str, *extra: str) -> float:
    status, out, _ = _cli(["run", "-w", "resnet18", "-a", arch, "-f", "json", *extra])
    assert status == 0
    return json.loads(out)["energy_pj"]


def _loads_quietly(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ArchWarning)       # a template is plausible: no warning
        return load_arch(str(path))


# ---------------------------------------------------------------- templates

@pytest.mark.parametrize("name", TEMPLATES)
def test_each_template_loads_as_is_and_simulates_resnet18(name, tmp_path):
    status, text, err = _cli(["show-arch", "--template", name])
    assert status == 0 and err == ""
    assert text.startswith("# tilesim arch template") and "docs/arch-reference.md" in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    arch = _loads_quietly(path)
    assert arch.node_nm and arch.area is not None and arch.energy.defaults is not None
    status, out, err = _cli(["run", "-w", "resnet18", "-a", str(path), "-f", "json"])
    assert status == 0 and err == ""
    report = json.loads(out)
    assert report["cycles"] > 0 and report["energy_pj"] > 0 and report["area_mm2"] > 0


def test_template_default_is_edge_and_refuses_an_arch():
    assert _cli(["show-arch", "--template"])[1] == _cli(["show-arch", "--template", "edge"])[1]
    status, _, err = _cli(["show-arch", "edge-npu", "--template", "gpu"])
    assert status == 2 and err.count("\n") == 1 and "--template" in err


# ---------------------------------------------------------------- show-arch output people edit

@pytest.mark.parametrize("preset", preset_names())
def test_show_arch_yaml_loads_back_to_the_same_arch(preset):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ArchWarning)       # presets use the one node setting
        arch = load_arch(preset)
        assert arch_from_dict(load_yaml_text(editable_yaml(preset), "show-arch")) == arch


def test_editing_the_node_in_show_arch_output_takes_effect(tmp_path):
    # issue 28 reproducer: `show-arch edge-npu > my.yaml` wrote the resolved energy table, so editing the node left
    # the energy unchanged (14.3 mJ either way) while --set of the same node changed it
    status, text, _ = _cli(["show-arch", "edge-npu"])
    assert status == 0 and "\nnode_nm: 7.0\n" in text and "  defaults:\n    offchip: LPDDR4\n" in text
    assert "mac.int16" not in text.split("# energy.actions derived")[0]   # derived entries only as comments
    mine = tmp_path / "my.yaml"
    mine.write_text(text)
    edited = tmp_path / "my28.yaml"
    edited.write_text(text.replace("\nnode_nm: 7.0\n", "\nnode_nm: 28\n"))
    base, moved = _energy_pj(str(mine)), _energy_pj(str(edited))
    assert base == _energy_pj("edge-npu")
    assert moved == _energy_pj("edge-npu", "--set", "node_nm=28") != base
    assert area_mm2(load_arch(str(edited)))["array"] == area_mm2(load_arch("edge-npu", ["node_nm=28"]))["array"]


def test_show_arch_keeps_bandwidth_in_gb_s_and_sizes_in_units():
    d = load_yaml_text(editable_yaml("edge-npu"), "show-arch")
    dram, sram = d["memory"]
    assert dram["bandwidth_gb_s"] == 12.8 and "bandwidth_bytes_per_cycle" not in dram
    assert dram["capacity_bytes"] == "4 GiB" and sram["capacity_bytes"] == "512 KiB"
    assert d["clock_hz"] == "800 MHz"
    # the clock edited, the GB/s stays (bytes per cycle follow it)
    faster = arch_from_dict({**d, "clock_hz": "1.6 GHz"})
    assert faster.offchip.bandwidth_bytes_per_cycle == pytest.approx(12.8e9 / 1.6e9)


# ---------------------------------------------------------------- one node setting

def _with_defaults(**top) -> dict:
    d = tiny_arch_dict()
    del d["energy"]["actions"]["array.hop_byte"]
    d["energy"]["defaults"] = {"offchip": "LPDDR4"}
    return {**d, **top}


def test_top_level_node_feeds_energy_and_area():
    arch = arch_from_dict(_with_defaults(node_nm=7))
    assert arch.node_nm == 7 and arch.area is not None and arch.area.node_nm == 7
    assert arch.energy.defaults.node_nm == 7
    at28 = arch_from_dict(_with_defaults(node_nm=28))
    assert at28.energy.actions["array.hop_byte"].pj > arch.energy.actions["array.hop_byte"].pj
    assert area_mm2(at28)["array"] > area_mm2(arch)["array"]


def test_old_node_spellings_load_with_one_warning_each():
    d = _with_defaults()
    d["energy"]["defaults"]["node_nm"] = 7
    d["area"] = {"node_nm": 7}
    with pytest.warns(ArchWarning) as record:
        old = arch_from_dict(d)
    assert sorted(str(w.message).split(" ")[0] for w in record) == ["area.node_nm", "energy.defaults.node_nm"]
    assert all("deprecated" in str(w.message) and "node_nm: 7" in str(w.message) for w in record)
    assert old == arch_from_dict(_with_defaults(node_nm=7))


def test_a_conflicting_area_node_is_an_error_and_an_energy_node_an_override():
    with pytest.raises(InputError, match=r"area.node_nm: 22 conflicts with node_nm 7"):
        arch_from_dict({**_with_defaults(node_nm=7), "area": {"node_nm": 22}})
    d = _with_defaults(node_nm=22)
    d["energy"]["defaults"]["node_nm"] = 45          # energy figures of another node (gemmini's Horowitz values)
    arch = arch_from_dict(d)
    assert arch.area.node_nm == 22 and arch.energy.defaults.node_nm == 45


def test_defaults_without_any_node_name_the_top_level_field():
    with pytest.raises(InputError, match=r"energy.defaults: needs the process node: give node_nm at the top level"):
        arch_from_dict(_with_defaults())


def test_presets_give_the_node_once():
    for name in preset_names():
        text = Path(load_arch.__code__.co_filename).parent.joinpath("presets", f"{name}.yaml").read_text()
        assert "\nnode_nm:" in text and "\narea:" not in text, name


# ---------------------------------------------------------------- plausibility warnings

def _warnings_of(d: dict) -> list[str]:
    with pytest.warns(ArchWarning) as record:
        arch_from_dict(d)
    return [str(w.message) for w in record]


def test_a_clock_below_1_mhz_warns():
    (line,) = _warnings_of({**tiny_arch_dict(), "clock_hz": 800})
    assert line.startswith("clock_hz: 800 Hz is below 1 MHz") and "'800 MHz'" in line
    status, _, err = _cli(["run", "-w", "gemm:16,16,16", "-a", "edge-npu", "--set", "clock_hz=800"])
    assert status == 0 and err == "tilesim: warning: " + line + "\n"


def test_bandwidth_below_a_byte_per_cycle_warns():
    (line,) = _warnings_of(tiny_arch_dict(bw=0.5))
    assert line.startswith("memory.dram: bandwidth 0.5 bytes/cycle (0.5 GB/s at clock_hz) is below 1 byte per cycle")


def test_float_array_with_integer_accumulator_warns():
    d = tiny_arch_dict()
    d["array"]["dtype"] = "bf16"
    (line,) = _warnings_of(d)
    assert line.startswith("array.acc_dtype: int32 accumulates bf16 products")


def test_on_chip_level_as_large_as_off_chip_warns():
    (line,) = _warnings_of(tiny_arch_dict(sram_bytes=1 << 32))
    assert line.startswith("memory.sram.capacity_bytes: 4,294,967,296 bytes on chip is not smaller than the off-chip")


def test_a_workload_dtype_the_array_lacks_warns_once():
    status, _, err = _cli(["run", "-w", "gemm:16,16,16", "-a", "edge-npu", "--dtype", "bf16"])
    assert status == 0 and err.count("\n") == 1
    assert err.startswith("tilesim: warning: --dtype bf16: edge-npu's array computes int8 (array.dtype)")
    status, _, err = _cli(["run", "-w", "gemm:16,16,16", "-a", "edge-npu", "--dtype", "int4"])
    assert status == 0 and err == ""              # int4 runs on int8 MACs


def test_presets_load_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ArchWarning)
        for name in preset_names():
            load_arch(name)


# ---------------------------------------------------------------- the field reference

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "arch-reference.md"


def test_arch_reference_is_generated_from_the_dataclasses_and_current():
    # regenerate: python -m tilesim.arch.reference > docs/arch-reference.md
    assert REFERENCE.read_text() == reference()


def test_every_field_of_every_section_is_documented():
    for path, cls in sections():
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"{path or 'top level'}.{f.name} has no doc"
            assert f"| `{f.name}` |" in REFERENCE.read_text()
    assert {p for p, _ in sections()} >= {"", "array", "vector", "vector.row_passes[]", "memory[]", "energy",
                                          "energy.actions.<name>", "energy.defaults", "area", "power", "power.dvfs"}


def test_units_defaults_and_allowed_values_come_from_the_fields():
    text = REFERENCE.read_text()
    assert "| `capacity_bytes` | integer | bytes; or with a unit: KiB" in text
    assert "| `clock_hz` | number | Hz; or with a unit: kHz, MHz, GHz | required |" in text
    assert "| `dataflow` | choice |  | ws | `ws`, `os`, `is` |" in text
    assert "| `bandwidth_gb_s` | number | GB/s" in text


def test_unknown_memory_key_lists_every_accepted_key_bandwidth_gb_s_included():
    # issue 28: the memory "allowed:" list omitted bandwidth_gb_s, which the README accepts
    d = tiny_arch_dict()
    d["memory"][0]["bandwith_gb_s"] = 12.8
    with pytest.raises(InputError) as e:
        arch_from_dict(d)
    message = str(e.value)
    assert "memory[0].bandwith_gb_s: unknown field (did you mean 'bandwidth_gb_s'?)" in message
    allowed = message.split("allowed: ")[1].split(";")[0].split(", ")
    assert sorted(allowed) == sorted(accepted_keys(MemLevel)) and "bandwidth_gb_s" in allowed
    status, _, err = _cli(["run", "-w", "gemm:8,8,8", "-a", "edge-npu", "--set", "memory.dram.bandwith_gb_s=3"])
    assert status == 2 and "(did you mean 'bandwidth_gb_s'?)" in err and "bandwidth_gb_s, burst_bytes" in err


def test_an_old_file_with_different_area_and_energy_nodes_is_told_to_move_the_area_node_only():
    d = _with_defaults()
    d["energy"]["defaults"]["node_nm"] = 45
    d["area"] = {"node_nm": 22}
    with pytest.warns(ArchWarning) as record:
        old = arch_from_dict(d)
    assert [str(w.message) for w in record] == [
        "area.node_nm is deprecated: give the process node once, as `node_nm: 22` at the top level (it feeds the "
        "energy and area models)"]
    new = _with_defaults(node_nm=22)
    new["energy"]["defaults"]["node_nm"] = 45
    assert old == arch_from_dict(new)


def test_a_tdp_below_the_static_power_warns():
    d = tiny_arch_dict(static_mw=5000)
    d["power"] = {"tdp_w": 2}
    (line,) = _warnings_of(d)
    assert line == ("power.tdp_w: 2 W is below the chip's static power alone (energy.static_mw 5000 mW = 5 W); "
                    "static_mw is in mW")
