"""A split contraction with a fused epilogue behind a cache (issue 22): cores share A tiles but read the epilogue's
other inputs for their own outputs; worked out on runs (command sets cut at common boundaries), the commands equal
the tile-by-tile construction tile for tile."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tilesim.arch import load_arch
from tilesim.compiler.schedule import lower
from tilesim.core.commands import (
    _PER_TILE,
    combine_cores,
    contraction_commands,
    core_blocks,
    kernel_runs,
    through_cache,
    with_access_latency,
)
from tilesim.workloads import load_workload


def tile_by_tile(kernel, arch, timing):
    """kernel_runs' split contraction before issue 22's runs: every core block expanded to tiles first (pipelined
    timing: the on-chip access latency on top)."""
    core, work, epi = arch.per_core(), kernel.work, kernel.epilogue
    blocks = [(contraction_commands(b, kernel, core, timing), b, cm, cn)
              for b, cm, cn in core_blocks(work, kernel.split, arch.cores)]
    once = tuple(o for o in ("input", "weight") if arch.loads_once(o))
    plain = replace(kernel, epilogue=replace(epi, read_bytes=kernel.residency.extra_bytes))
    bare = [(contraction_commands(b, plain, core, timing), b, cm, cn)
            for b, cm, cn in core_blocks(work, kernel.split, arch.cores)]
    own = [(replace(c, input_bytes=c.input_bytes - p.input_bytes), b, cm, cn)
           for (c, b, cm, cn), (p, _, _, _) in zip(blocks, bare, strict=True)]
    cmds = replace(combine_cores(blocks, once), input_bytes=combine_cores(bare, once).input_bytes
                   + combine_cores(own).input_bytes)
    return with_access_latency(through_cache(cmds, kernel, arch, timing).expanded(), kernel, arch)


@pytest.mark.parametrize(("workload", "options"), [("gpt2", {"seq_len": 1024, "batch": 64}),
                                                   ("bert-base", {"seq_len": 512, "batch": 64})])
def test_split_epilogue_kernels_behind_a_cache_equal_tile_by_tile(workload, options):
    arch = load_arch("h100")
    schedule = lower(load_workload(workload, **options), arch)
    kernels = [k for k in schedule.kernels if k.split and k.epilogue is not None
               and k.epilogue.read_bytes > k.residency.extra_bytes]
    assert kernels and arch.loads_once("input")
    assert max(kernel_runs(k, arch, schedule.timing).compute.shape[0] for k in kernels) > 20    # runs, cut apart
    for k in kernels[:8]:
        runs = kernel_runs(k, arch, schedule.timing).expanded()
        want = tile_by_tile(k, arch, schedule.timing)
        for f in _PER_TILE:
            np.testing.assert_array_equal(getattr(runs, f), getattr(want, f), err_msg=f"{k.name} {f}")
