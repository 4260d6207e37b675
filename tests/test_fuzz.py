"""Fuzzing the inputs users hand us: the arch YAML loader and the ONNX importer either work or raise InputError.

CI runs a short pass; `TILESIM_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz.py` runs longer locally."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arch import InputError, arch_from_dict
from arch.loader import apply_overrides, load_yaml_text, raw_arch

EXAMPLES = int(os.environ.get("TILESIM_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["24 MiB", "700 MHz", "ws", "os", "sram", "offchip",
                                                           "input", "int8", "bf16", "-1", "1e400"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
PRESET, _ = raw_arch("gemmini")


def mutate(raw: dict, path: list, value):
    """A copy of `raw` with the value at `path` (dict keys and list indexes) replaced."""
    import copy
    out = copy.deepcopy(raw)
    node = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return out


def paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix + (i,)
            yield from paths(v, prefix + (i,))


PATHS = list(paths(PRESET))


@FUZZ
@given(st.sampled_from(PATHS), values)
def test_arch_loader_mutations(path, value):
    try:
        arch_from_dict(mutate(PRESET, list(path), value))
    except InputError as e:
        assert "\n" not in str(e)


@FUZZ
@given(values)
def test_arch_loader_on_arbitrary_documents(doc):
    try:
        arch_from_dict(doc)
    except InputError as e:
        assert "\n" not in str(e)


@FUZZ
@given(st.text(max_size=200))
def test_yaml_text(text):
    try:
        load_yaml_text(text, "fuzz.yaml")
    except InputError as e:
        assert "\n" not in str(e)


@FUZZ
@given(st.lists(st.sampled_from([p for p in PATHS if all(isinstance(x, str) for x in p)]), max_size=3), scalars)
def test_set_overrides(keys, value):
    items = [".".join(map(str, k)) + "=" + yaml.safe_dump(value).strip().splitlines()[0] if True else ""
             for k in keys]
    try:
        arch_from_dict(apply_overrides(PRESET, items))
    except InputError as e:
        assert "\n" not in str(e)


ONNX_DIR = Path(__file__).parent / "data" / "onnx"


@FUZZ
@given(st.sampled_from(sorted(ONNX_DIR.glob("*.onnx"))), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                                   min_size=1, max_size=8), st.booleans())
def test_onnx_importer_on_corrupted_files(tmp_path_factory, source, edits, truncate):
    pytest.importorskip("onnx")
    from workloads import load_workload
    data = bytearray(source.read_bytes())
    for pos, byte in edits:
        data[pos % len(data)] = byte
    if truncate:
        data = data[: edits[0][0] % len(data)]
    path = tmp_path_factory.mktemp("fuzz") / "model.onnx"
    path.write_bytes(bytes(data))
    try:
        load_workload(str(path), dims={"batch": 1, "seq": 16})
    except InputError as e:
        assert "\n" not in str(e)
