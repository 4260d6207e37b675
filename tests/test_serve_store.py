"""The on-disk store of serving step-cost grids (sim/studies/serve_store.py): same grid back bit for bit, keys that
change with what a step's cost depends on, fallbacks when the cache folder cannot be written."""
from __future__ import annotations

import json

import pytest

from tilesim.arch import load_arch
from tilesim.compiler.schedule import CompileOptions
from tilesim.studies import serve_store, stores
from tilesim.studies.options import WorkloadOptions
from tilesim.studies.serve import SchedulerOptions, TraceOptions, serve
from tilesim.studies.serve_cost import StepCostModel
from tilesim.workloads import decoder_config
from tilesim.workloads import llm as wl

ARCH = load_arch("h100")
CFG = decoder_config("gpt2")
TYPES = wl.resolve_dtypes(None, ARCH.array.dtype)
STREAM = TraceOptions(rate=200.0, requests=40, prompt_lengths="uniform:20,300", output_lengths="uniform:2,40")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty user cache folder for the test."""
    monkeypatch.setenv("TILESIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TILESIM_STEP_CACHE", raising=False)
    return tmp_path / "cache" / "serve-steps"


def served(**sched):
    """A small gpt2 stream on h100."""
    return serve(WorkloadOptions("gpt2"), ARCH, CompileOptions(), STREAM, SchedulerOptions(**sched))


def test_a_stored_grid_serves_the_same_stream_without_simulating(cache_dir):
    first = served(scheduler="chunked", max_tokens=256)
    assert first.simulations > 0
    files = list(cache_dir.glob("*.json"))
    assert len(files) == 1
    again = served(scheduler="chunked", max_tokens=256)
    assert again.simulations == 0
    assert again.summary == first.summary and again.rows == first.rows       # bit-identical floats
    model = StepCostModel(CFG, ARCH, CompileOptions(), TYPES, stored=True)
    fresh = StepCostModel(CFG, ARCH, CompileOptions(), TYPES)
    assert model.stored_points > 0
    for t in model.prefill_parts:
        assert model.prefill_at(t) == fresh.prefill_at(t)
    for b, c in list(model.decode_parts)[:3]:
        assert model.decode_at(b, c) == fresh.decode_at(b, c)
    assert model.simulations == 0


def test_new_points_are_added_to_the_file(cache_dir):
    served(scheduler="continuous")
    before = json.loads(next(cache_dir.glob("*.json")).read_text())
    longer = serve(WorkloadOptions("gpt2"), ARCH, CompileOptions(), TraceOptions(
        rate=50.0, requests=5, prompt_lengths="fixed:900", output_lengths="fixed:3"), SchedulerOptions())
    assert longer.simulations > 0
    after = json.loads(next(cache_dir.glob("*.json")).read_text())
    assert set(before["prefill"]) < set(after["prefill"])


def test_the_key_follows_model_arch_dtypes_and_options(cache_dir):
    key = lambda *p: serve_store.store_key("serve-step", *p)               # noqa: E731
    base = key(CFG, ARCH, CompileOptions(), TYPES)
    assert base == key(CFG, load_arch("h100"), CompileOptions(), TYPES)
    others = {key(decoder_config("llama2-7b"), ARCH, CompileOptions(), TYPES),
              key(CFG, load_arch("h100", ["memory.hbm.bandwidth_gb_s=1000"]), CompileOptions(), TYPES),
              key(CFG, ARCH, CompileOptions(fusion="none"), TYPES),
              key(CFG, ARCH, CompileOptions(), wl.resolve_dtypes(None, "int8"))}
    assert base not in others and len(others) == 4


def test_a_damaged_file_is_ignored_and_replaced(cache_dir):
    first = served()
    path = next(cache_dir.glob("*.json"))
    for junk in ("{not json", json.dumps({"key": path.stem, "prefill": {"4": [1, 2]}}), "[]"):
        path.write_text(junk)
        again = served()
        assert again.simulations > 0 and again.summary == first.summary
        assert json.loads(path.read_text())["key"] == path.stem


def test_unwritable_cache_folder_falls_back_to_a_private_one(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("")                                 # a file where the folder would go: cannot be made
    monkeypatch.setenv("TILESIM_CACHE_DIR", str(blocked / "cache"))
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    monkeypatch.setattr(stores, "private_cache_dir", lambda: str(private))
    served()
    assert len(list((private / "serve-steps").glob("*.json"))) == 1
    monkeypatch.setattr(stores, "private_cache_dir", lambda: None)
    assert serve_store.StepStore("k").path is None and not serve_store.StepStore("k").save({})
    assert served().simulations > 0                      # nothing stored, nothing fails


def test_the_store_can_be_turned_off(cache_dir, monkeypatch):
    served(step_cache=False)
    assert not cache_dir.exists() or not list(cache_dir.glob("*.json"))
    monkeypatch.setenv("TILESIM_STEP_CACHE", "0")
    served()
    assert not cache_dir.exists() or not list(cache_dir.glob("*.json"))


def test_the_key_hashes_the_simulator_and_step_cost_source(monkeypatch):
    full = serve_store.source_fingerprint()
    for name, value in (("SOURCE_MODULES", ()), ("SOURCE_PACKAGES", ("tilesim.core",))):
        with monkeypatch.context() as m:
            m.setattr(serve_store, name, value)
            assert serve_store.source_fingerprint() != full
    assert serve_store.source_fingerprint() == full
