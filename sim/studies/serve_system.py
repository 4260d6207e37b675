"""Serving steps on a group of chips of a system: tensor parallelism over the group (docs/serving.md).

A group of tp chips holds the model split as `tilesim run --system` splits it (system.py shard: heads, kv heads,
ffn and vocab over tp, Megatron-LM's column/row-parallel layers); every chip runs the same shard, so a step's
compute is the shard's step cost on one chip (serve_cost.py StepCostModel over the shard's graphs). Around it, the
step's tensor-parallel collectives over the group on the system's topology (system.py stage_comm: two all-reduces
of tokens x hidden per layer, or reduce-scatter + all-gather with sequence parallelism, the embedding's all-reduce,
the all-gather of each sequence's logits), on the critical path (no overlap):

    latency = shard step + collectives
    energy  = tp x shard step energy (each chip's dynamic energy and static power while it computes)
              + link energy of the collectives + tp x static power x collective time (chips wait on the links)

A group of one chip is the chip itself: no collective, the shard is the model, the step costs are the chip's.
"""
from __future__ import annotations

from tilesim.arch.system import SystemConfig
from tilesim.compiler.schedule import CompileOptions
from tilesim.studies.options import OptionError, SystemOptions
from tilesim.studies.serve_cost import ZERO, Cost, StepCostModel
from tilesim.studies.system import Stage, check_layout, shard, stage_comm, stage_weight_bytes
from tilesim.workloads import llm as wl


def group_shard(cfg: wl.DecoderConfig, system: SystemConfig, tp: int, first_chip: int = 0) -> Stage:
    """The shard each of tp chips holds (one pipeline stage: both ends of the model); one-line errors when tp does
    not divide the model or the group does not fit the system."""
    o = SystemOptions(tp=tp)
    if first_chip + tp > system.chips:
        raise OptionError("tp", f"chips {first_chip}..{first_chip + tp - 1} are not all in the system "
                                f"'{system.name}' of {system.chips} chips")
    check_layout(cfg, o, 1, system)
    return shard(cfg, o)[0]


class GroupStepCost:
    """Step costs of a decoder on a tensor-parallel group of a system's chips: the shard's StepCostModel plus the
    step's collectives. Offers what the scheduler reads of a StepCostModel (cfg, static_w, step, verify,
    simulations, save_points)."""

    def __init__(self, cfg: wl.DecoderConfig, system: SystemConfig, tp: int, options: CompileOptions,
                 dtypes: wl.DTypes, stored: bool = False, first_chip: int = 0,
                 sequence_parallel: bool = False, algorithm: str = "ring"):
        self.cfg, self.system, self.tp, self.dtypes, self.first_chip = cfg, system, tp, dtypes, first_chip
        self.stage = group_shard(cfg, system, tp, first_chip)
        self.layout = SystemOptions(tp=tp, sequence_parallel=sequence_parallel, collective_algorithm=algorithm)
        self.chip = StepCostModel(self.stage.config, system.chip, options, dtypes, stored)
        self.static_w = tp * self.chip.static_w          # the group's leakage, W (serve_cost.py's figure per chip)
        self.comm_memo: dict[tuple[int, int], Cost] = {}

    @property
    def simulations(self) -> int:
        """Graph simulations the shard's model ran."""
        return self.chip.simulations

    def save_points(self) -> bool:
        """The shard's grid to the on-disk store."""
        return self.chip.save_points()

    def weight_bytes(self) -> int:
        """Weights each chip of the group holds."""
        return stage_weight_bytes(self.stage, self.dtypes.weight)

    def kv_bytes_per_token(self) -> int:
        """KV cache bytes per token on each chip (its kv heads; replicated when tp exceeds the model's)."""
        return wl.kv_cache_bytes_per_token(self.stage.config, self.dtypes.kv)

    def comm(self, tokens: int, sequences: int) -> Cost:
        """The collectives of a step of `tokens` tokens over `sequences` sequences: their time, and their energy
        (links, plus the group's static power while it waits on them)."""
        if self.tp == 1 or tokens == 0:
            return ZERO
        key = (tokens, sequences)
        if key not in self.comm_memo:
            c = stage_comm(self.system, self.layout, self.stage, self.cfg, sequences, 1, self.dtypes.activation,
                           tokens=tokens, first_chip=self.first_chip)["tp"]
            self.comm_memo[key] = Cost(c.time_s, c.energy_pj + self.static_w * c.time_s * 1e12)
        return self.comm_memo[key]

    def on_group(self, chip: Cost, tokens: int, sequences: int) -> Cost:
        """A step of the group from its shard's step on one chip: tp chips' energy, plus the collectives."""
        return Cost(chip.latency_s, chip.energy_pj * self.tp) + self.comm(tokens, sequences)

    def step(self, chunks: list[tuple[int, int]], decode_contexts: list[int]) -> Cost:
        """A step: prefill chunks (tokens, cached context) and decoding sequences (their contexts)."""
        tokens = sum(n for n, _ in chunks) + len(decode_contexts)
        return self.on_group(self.chip.step(chunks, decode_contexts), tokens, len(chunks) + len(decode_contexts))

    def verify(self, decode_contexts: list[int], k: int) -> Cost:
        """Speculative decoding's verification step on the group (serve_cost.py StepCostModel.verify)."""
        b = len(decode_contexts)
        return self.on_group(self.chip.verify(decode_contexts, k), b * (k + 1), b)
