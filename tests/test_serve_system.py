"""`tilesim serve` on systems: a tensor-parallel group of chips (serve_system.py) and prefill/decode disaggregation
with the KV cache sent over a link (serve_disagg.py)."""
from __future__ import annotations

import dataclasses
import json

import pytest

import tilesim
from tilesim.arch import load_arch
from tilesim.arch.system import LINKS, Link, SystemConfig, load_system
from tilesim.cli.main import main
from tilesim.compiler.schedule import CompileOptions
from tilesim.report.serve import trace_events
from tilesim.studies.options import OptionError, WorkloadOptions
from tilesim.studies.serve import PlacementOptions, SchedulerOptions, server
from tilesim.studies.serve_cost import StepCostModel
from tilesim.studies.serve_disagg import LinkQueue
from tilesim.studies.serve_system import GroupStepCost
from tilesim.studies.serve_trace import read_trace
from tilesim.workloads import decoder_config
from tilesim.workloads import llm as wl

ARCH = load_arch("h100")
CFG = decoder_config("gpt2")
TYPES = wl.resolve_dtypes(None, ARCH.array.dtype)
GPT2_KV_BYTES = 2 * 12 * 768 * 2          # K and V, 12 layers, hidden 768, bf16: 36,864 B per token


def write_trace(tmp_path, rows, name="t.csv"):
    """A trace CSV of (arrival_s, prompt_tokens, output_tokens) rows."""
    path = tmp_path / name
    path.write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join(f"{a},{p},{o}\n" for a, p, o in rows))
    return str(path)


def one_chip_system(tmp_path):
    """A system YAML of one h100."""
    path = tmp_path / "one.yaml"
    path.write_text("system:\n  name: 1xh100\n  chip: h100\n  chips: 1\n  topology: switch\n  link: nvlink4\n")
    return str(path)


# ---------------------------------------------------------------- tensor parallel

def test_a_one_chip_system_serves_as_the_chip(tmp_path):
    kw = {"rate": 300.0, "requests": 40, "prompt_lengths": "uniform:16,400", "output_lengths": "uniform:2,60",
          "step_cache": False, "scheduler": "chunked", "max_tokens": 256}
    chip = tilesim.serve("gpt2", "h100", **kw)
    system = tilesim.serve("gpt2", system=one_chip_system(tmp_path), **kw)
    assert system.arch == "1xh100" and system.summary["placement"] == {"system": "1xh100", "chips": 1, "tp": 1}
    assert system.rows == chip.rows
    assert {k: v for k, v in system.summary.items() if k != "placement"} == \
        {k: v for k, v in chip.summary.items() if k != "placement"}


def test_tp2_step_is_between_half_and_all_of_tp1_plus_collectives():
    system = load_system("8xh100")
    one = StepCostModel(CFG, system.chip, CompileOptions(), TYPES)
    two = GroupStepCost(CFG, system, 2, CompileOptions(), TYPES)
    for chunks, decode in (([(512, 0)], []), ([], [1024] * 16), ([(128, 256)], [300] * 8)):
        tokens = sum(n for n, _ in chunks) + len(decode)
        full = one.step(chunks, decode).latency_s
        comm = two.comm(tokens, len(chunks) + len(decode)).latency_s
        step = two.step(chunks, decode).latency_s
        assert comm > 0
        assert full / 2 + comm <= step <= full + comm, (chunks, decode)


def test_tp_collectives_are_two_all_reduces_per_layer_plus_embedding_and_logits():
    system = load_system("8xh100")
    two = GroupStepCost(CFG, system, 2, CompileOptions(), TYPES)
    link = system.link
    # ring all-reduce over 2 chips of n bytes: 2 (p-1) = 2 steps of alpha + (n/2)/B; all-gather: 1 step
    ar = lambda n: 2 * (link.latency_s + n / 2 / link.bytes_per_s)             # noqa: E731
    tokens, seqs = 64, 4
    want = (2 * 12 + 1) * ar(tokens * 768 * 2) + link.latency_s + seqs * CFG.vocab * 2 / 2 / link.bytes_per_s
    assert two.comm(tokens, seqs).latency_s == pytest.approx(want, rel=1e-12)


def test_system_kv_cache_is_per_chip_memory_less_the_shard():
    srv = server(WorkloadOptions("llama2-7b"), ARCH, CompileOptions(), SchedulerOptions(step_cache=False),
                 placement=PlacementOptions(system="8xh100", tp=4), system=load_system("8xh100"))
    full_weights = wl.weight_bytes(decoder_config("llama2-7b"), "bf16")
    assert full_weights / 4 < srv.weight_bytes < full_weights / 4 * 1.01          # embedding/head split too
    per_token = wl.kv_cache_bytes_per_token(decoder_config("llama2-7b"), "bf16") // 4
    assert srv.kv_bytes_per_token == per_token
    assert srv.config.kv_blocks == (ARCH.offchip.capacity_bytes - srv.weight_bytes) // (16 * per_token)


def test_system_layout_errors_are_one_line(capsys):
    for args, want in ((["--system", "8xh100", "--tp", "5"], "--tp: gpt2 has heads 12, not divisible by tp 5"),
                       (["--tp", "2"], "--tp: tensor-parallel serving needs a system"),
                       (["--system", "8xh100", "--tp", "16"], "--tp: chips 0..15 are not all in the system"),
                       (["--disaggregate"], "--link: --disaggregate without --system needs the link"),
                       (["--prefill-chips", "2"],
                        "--prefill-chips, --decode-chips, --link: these apply to disaggregated serving only"),
                       (["--disaggregate", "--link", "nvlink9"], "--link: unknown link 'nvlink9'"),
                       (["--disaggregate", "--system", "8xh100", "--prefill-chips", "4", "--decode-chips", "5"],
                        "the system '8xh100' has 8"),
                       (["--disaggregate", "--link", "pcie5", "--scheduler", "static"],
                        "--disaggregate: disaggregated serving runs the continuous or chunked scheduler")):
        code = main(["serve", "-w", "gpt2", "--rate", "10", "--requests", "3", "--no-step-cache", *args])
        err = capsys.readouterr().err
        assert code == 2 and want in err and err.count("\n") == 1, (args, err)


# ---------------------------------------------------------------- disaggregation

def test_kv_transfer_time_is_alpha_beta_and_the_link_is_fifo():
    link = LINKS["pcie5"]                          # 64 GB/s, 5 us
    q = LinkQueue(link, ports=1)
    first, second = (q.send(i, 1e-3, 100 * GPT2_KV_BYTES) for i in range(2))
    one = 5e-6 + 100 * 36_864 / 64e9               # 62.6 us
    assert first.bytes == 3_686_400 and first.end_s - first.start_s == pytest.approx(one, rel=1e-12)
    assert (first.start_s, second.start_s) == (1e-3, first.end_s)          # the second waits for the link
    assert second.end_s == pytest.approx(1e-3 + 2 * one, rel=1e-12)
    assert first.energy_pj == pytest.approx(3_686_400 * 8 * link.pj_per_bit)
    two_ports = LinkQueue(link, ports=2).send(0, 1e-3, 100 * GPT2_KV_BYTES)
    assert two_ports.end_s - two_ports.start_s == pytest.approx(5e-6 + 3_686_400 / 2 / 64e9, rel=1e-12)


def disaggregated(trace, link=None, **sched):
    """gpt2 on two h100s, one per group (the link replaced when given) and its served stream."""
    place = PlacementOptions(disaggregate=True, link="pcie5")
    srv = server(WorkloadOptions("gpt2"), ARCH, CompileOptions(), SchedulerOptions(step_cache=False, **sched), 0,
                 place, place.system_config(ARCH))
    if link is not None:
        srv = dataclasses.replace(srv, disagg=dataclasses.replace(srv.disagg, link=link))
    return srv, srv.serve(read_trace(trace), None, None)


def test_with_an_instant_link_one_request_is_served_as_on_one_chip(tmp_path):
    trace = write_trace(tmp_path, [(0.0, 300, 40)])
    instant = Link(1e15, 0.0, 0.0, name="instant")
    srv, r = disaggregated(trace, instant)
    alone = tilesim.serve("gpt2", "h100", trace=trace, step_cache=False)
    prefill = srv.disagg.prefill_model.step([(300, 0)], []).latency_s
    row, ref = r.rows[0], alone.rows[0]
    assert row["ttft_s"] == pytest.approx(prefill, rel=1e-12)                  # TTFT = the prefill group's prefill
    assert row["ttft_s"] == ref["ttft_s"]
    assert row["e2e_s"] == pytest.approx(ref["e2e_s"], rel=1e-9)                # decode steps alike, transfer ~0
    t = r.summary["disaggregation"]
    assert t["kv_transfers"] == 1 and t["kv_transfer_bytes"] == 300 * GPT2_KV_BYTES


def test_one_request_end_to_end_is_prefill_transfer_and_decode_steps(tmp_path):
    trace = write_trace(tmp_path, [(0.5, 100, 5)])
    srv, r = disaggregated(trace)
    dec = srv.disagg.decode_model
    steps = sum(dec.step([], [100 + i]).latency_s for i in range(4))
    transfer = 5e-6 + 100 * GPT2_KV_BYTES / 64e9
    row = r.rows[0]
    assert row["e2e_s"] == pytest.approx(row["ttft_s"] + transfer + steps, rel=1e-12)
    assert row["tpot_s"] == pytest.approx((transfer + steps) / 4, rel=1e-12)


def test_throughput_is_bounded_by_the_slower_group_and_the_link(tmp_path):
    trace = write_trace(tmp_path, [(0.0, 256, 32)] * 24)
    slow = Link(0.05, 5.0, 5.0, name="slow")          # 9.4 MB a prompt at 50 MB/s: ~0.19 s each
    _, r = disaggregated(trace, slow, max_batch=32)
    s, d = r.summary, r.summary["disaggregation"]
    per_transfer = 5e-6 + 256 * GPT2_KV_BYTES / 0.05e9
    rate = s["throughput_requests_per_s"]
    assert rate <= 1 / per_transfer
    assert rate >= 0.8 / per_transfer                  # the link is the bottleneck: nearly saturated
    for g in d["groups"].values():
        assert rate <= s["served"] / g["busy_s"] and g["utilization"] <= 1
    _, fast = disaggregated(trace, None, max_batch=32)
    groups = fast.summary["disaggregation"]["groups"]
    bound = min(fast.summary["served"] / g["busy_s"] for g in groups.values())
    assert fast.summary["throughput_requests_per_s"] <= bound
    assert fast.summary["disaggregation"]["kv_transfer_s"]["p99"] < per_transfer / 100


def test_disaggregated_energy_adds_both_groups_and_the_link(tmp_path):
    trace = write_trace(tmp_path, [(0.0, 200, 10), (0.01, 50, 1), (0.02, 120, 20)])
    _, r = disaggregated(trace)
    s, d = r.summary, r.summary["disaggregation"]
    assert d["kv_transfers"] == 2                                       # one output token: no transfer
    steps_j = sum(st.energy_pj for st in r.run.steps) * 1e-12
    idle_j = sum(g["idle_energy_j"] for g in d["groups"].values())
    assert s["energy_j"] == pytest.approx(steps_j + idle_j + d["link_energy_j"], rel=1e-12)
    served = [row for row in r.rows if row["status"] == "served"]
    assert s["mean_in_system"] == pytest.approx(s["throughput_requests_per_s"] * s["e2e_s"]["mean"], rel=1e-12)
    assert len(served) == 3


def test_disaggregate_cli_reports_groups_and_link(capsys, tmp_path):
    trace = write_trace(tmp_path, [(0.0, 64, 4), (0.001, 32, 3)])
    code = main(["serve", "-w", "gpt2", "--trace", trace, "--disaggregate", "--link", "pcie5", "--no-step-cache"])
    out = capsys.readouterr().out
    assert code == 0
    assert "prefill group   1 chip(s)" in out and "decode group    1 chip(s)" in out
    assert "KV transfers    2 over pcie5 (64 GB/s, 5 us)" in out
    code = main(["serve", "-w", "gpt2", "--trace", trace, "--disaggregate", "--system", "8xh100",
                 "--prefill-chips", "2", "--decode-chips", "4", "--no-step-cache", "-f", "json"])
    assert code == 0
    s = json.loads(capsys.readouterr().out)["summary"]
    assert s["placement"]["prefill_chips"] == 2 and s["disaggregation"]["link"] == "nvlink4"
    assert [g["chips"] for g in s["disaggregation"]["groups"].values()] == [2, 4]


def test_group_members_start_after_the_prefill_group():
    system = SystemConfig("4xh100", ARCH, 4, "ring", LINKS["nvlink4"])
    a = GroupStepCost(CFG, system, 2, CompileOptions(), TYPES, first_chip=0)
    b = GroupStepCost(CFG, system, 2, CompileOptions(), TYPES, first_chip=2)
    assert a.comm(32, 1) == b.comm(32, 1)            # either pair of ring neighbours costs the same
    with pytest.raises(OptionError, match=r"chips 3\.\.4 are not all in the system"):
        GroupStepCost(CFG, system, 2, CompileOptions(), TYPES, first_chip=3)


# ---------------------------------------------------------------- grids of scheduler, placement and arch settings

def test_each_grid_point_is_the_plain_serve_with_its_settings():
    kw = {"rate": 400.0, "requests": 40, "prompt_lengths": "uniform:16,300", "output_lengths": "uniform:2,40",
          "step_cache": False}
    grid = tilesim.serve_grid("gpt2", "h100", grid=["max_batch=4,16", "memory.hbm.bandwidth_gb_s=1500,3020"], **kw)
    assert [p.settings for p in grid.points] == [
        {"max_batch": "4", "memory.hbm.bandwidth_gb_s": "1500"},
        {"max_batch": "4", "memory.hbm.bandwidth_gb_s": "3020"},
        {"max_batch": "16", "memory.hbm.bandwidth_gb_s": "1500"},
        {"max_batch": "16", "memory.hbm.bandwidth_gb_s": "3020"}]
    for p in grid.points:
        bandwidth = p.settings["memory.hbm.bandwidth_gb_s"]
        plain = tilesim.serve("gpt2", "h100", overrides=[f"memory.hbm.bandwidth_gb_s={bandwidth}"],
                              max_batch=int(p.settings["max_batch"]), **kw)
        assert p.result.summary == plain.summary
    slow, fast = grid.points[2].result.summary, grid.points[3].result.summary
    assert slow["tpot_s"]["p50"] > fast["tpot_s"]["p50"]            # half the HBM bandwidth: slower decode


def test_grid_with_rates_finds_each_knee_and_the_best(capsys):
    grid = tilesim.serve_grid("gpt2", "h100", grid=["max_batch=2,16"], rates="300,3000", requests=60,
                              prompt_lengths="fixed:256", output_lengths="fixed:32", slo_ttft=0.005, slo_tpot=0.001,
                              step_cache=False)
    knees = [p.sweep.knee_rate for p in grid.points]
    assert knees[0] is None or knees[0] < knees[1]                   # a batch of 2 cannot keep up
    assert grid.best is grid.points[1] and grid.to_dict()["best"]["knee_rate"] == knees[1]
    code = main(["serve", "-w", "gpt2", "--rates", "300,3000", "--requests", "60", "--prompt-lengths", "fixed:256",
                 "--output-lengths", "fixed:32", "--slo-ttft", "0.005", "--slo-tpot", "0.001", "--grid",
                 "max_batch=2,16", "--no-step-cache", "-f", "csv"])
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines()[0].startswith("max_batch,rate,served")
    assert len(out.splitlines()) == 5
    for args, want in ((["--grid", "colour=1,2"], "--grid colour: not a serving option or arch field"),
                       (["--grid", "max_batch=0,2"], "--max-batch: must be >= 1, got 0"),
                       (["--grid", "max_batch=2", "--plot", "x.png"], "--grid: a grid writes its table")):
        code = main(["serve", "-w", "gpt2", "--rate", "10", "--requests", "3", "--no-step-cache", *args])
        err = capsys.readouterr().err
        assert code == 2 and want in err and err.count("\n") == 1, (args, err)


def test_rate_sweep_on_a_system_is_each_rate_served_there(tmp_path, monkeypatch):
    monkeypatch.setenv("TILESIM_CACHE_DIR", str(tmp_path))             # a fresh store, shared by the runs below
    kw = {"requests": 30, "prompt_lengths": "fixed:128", "output_lengths": "fixed:16", "system": "8xh100", "tp": 2}
    sweep = tilesim.serve_rates("gpt2", rates="100,1000", **kw)
    assert sweep.results[0].arch == "8xh100"
    for rate, result in zip(sweep.rates, sweep.results, strict=True):
        assert result.summary == tilesim.serve("gpt2", rate=rate, **kw).summary


def test_perfetto_trace_shows_the_kv_transfer(tmp_path):
    trace = write_trace(tmp_path, [(0.0, 100, 5)])
    _, r = disaggregated(trace)
    events = {e["name"]: e for e in trace_events(r)
              if e.get("ph") == "X"}
    t = r.run.extra["transfers"][0]
    assert events["kv transfer"]["dur"] == pytest.approx((t.end_s - t.ready_s) * 1e6)
    assert events["decode"]["ts"] == pytest.approx(t.end_s * 1e6)


def test_prefill_blocks_are_held_until_the_cache_is_sent(tmp_path):
    trace = write_trace(tmp_path, [(0.0, 200, 4)] * 3)
    slow = Link(0.05, 5.0, 5.0, name="slow")          # 200 tokens: 7.4 MB, ~0.15 s on the link
    _, r = disaggregated(trace, slow, kv_blocks=13)   # 13 blocks of 16: one request's prompt (and its next token)
    sent = sorted(r.run.extra["transfers"], key=lambda t: t.start_s)
    ttft = sorted(row["ttft_s"] for row in r.rows)
    assert ttft[1] > sent[0].end_s and ttft[2] > sent[1].end_s      # each prefill waits for the last one's send
    _, fast = disaggregated(trace, None, kv_blocks=13)
    assert sorted(row["ttft_s"] for row in fast.rows)[2] < sent[0].end_s
