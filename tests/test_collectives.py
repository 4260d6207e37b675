"""Collectives in closed form (sim/core/collectives.py) against hand-computed cases, and their properties."""
from __future__ import annotations

import pytest

from tilesim.arch.system import Link, SystemConfig, load_system
from tilesim.core import collectives as c

LINK = Link(bandwidth_gb_s=1.0, latency_us=1.0, pj_per_bit=2.0)        # 1e9 B/s, alpha 1 us
SLOW = Link(bandwidth_gb_s=0.5, latency_us=2.0, pj_per_bit=10.0)


def system(topology: str, chips: int, dims=(), per_node=0) -> SystemConfig:
    chip = load_system("edge-4ring").chip
    return SystemConfig("t", chip, chips, topology, LINK, tuple(dims), per_node,
                        SLOW if topology == "hierarchical" else None)


def test_ring_all_reduce_by_hand():
    # p = 4, n = 4000 B: 2 (p-1) = 6 steps of alpha + n/p / B = 1 us + 1 us
    r = c.ring_all_reduce(4, 4000, LINK)
    assert r.time_s == pytest.approx(12e-6, rel=1e-12)
    assert r.sent_bytes == 6000 and r.steps == 6             # 2 (p-1)/p n per chip
    assert r.link_bytes == 24000 and r.energy_pj == pytest.approx(24000 * 8 * 2.0)


@pytest.mark.parametrize("p", [2, 3, 5, 8, 64])
def test_ring_all_reduce_moves_2_p_minus_1_over_p_of_the_data_per_chip(p):
    n = 1e6
    assert c.ring_all_reduce(p, n, LINK).sent_bytes == pytest.approx(2 * (p - 1) / p * n, rel=1e-12)
    assert c.ring_reduce_scatter(p, n, LINK).sent_bytes == pytest.approx((p - 1) / p * n, rel=1e-12)
    assert c.ring_all_gather(p, n, LINK).sent_bytes == pytest.approx((p - 1) / p * n, rel=1e-12)


def test_tree_all_reduce_by_hand():
    # p = 8: 2 log2(8) = 6 steps of alpha + n/B = 1 us + 1 us; every one of the 7 edges carries n up and down
    r = c.tree_all_reduce(8, 1000, LINK)
    assert r.time_s == pytest.approx(12e-6, rel=1e-12) and r.steps == 6 and r.link_bytes == 14000


def test_tree_beats_ring_on_small_messages_and_loses_on_large_ones():
    assert c.tree_all_reduce(8, 100, LINK).time_s < c.ring_all_reduce(8, 100, LINK).time_s
    assert c.tree_all_reduce(8, 1e8, LINK).time_s > c.ring_all_reduce(8, 1e8, LINK).time_s


def test_direct_all_to_all_and_point_to_point_by_hand():
    # 4 chips on a switch each send 3 x 1000 B at once through their own port: 1 us + 3000 / 1e9
    r = c.collective(system("switch", 4), "all_to_all", (0, 1, 2, 3), 4000)
    assert r.sent_bytes == 3000 and r.link_bytes == 12000
    assert r.time_s == pytest.approx(1e-6 + 3e-6, rel=1e-12)
    p = c.point_to_point(5000, LINK)
    assert p.time_s == pytest.approx(1e-6 + 5e-6, rel=1e-12) and p.link_bytes == 5000


def test_2d_torus_all_reduce_by_hand():
    # 4x4 torus, all 16 chips, n = 16000: closed rings run both ways (2 GB/s). Reduce-scatter along x on 16000 B:
    # 3 (1 us + 4000/2e9) = 9 us; along y on 4000 B: 3 (1 us + 1000/2e9) = 4.5 us; all-gather back the same.
    r = c.collective(system("torus2d", 16, (4, 4)), "all_reduce", tuple(range(16)), 16000)
    assert r.time_s == pytest.approx(2 * (9e-6 + 4.5e-6), rel=1e-12)
    assert r.steps == 12


def test_strided_groups_on_a_ring_share_links_and_cross_more_hops():
    ring = system("ring", 8)
    # chips 0, 2, 4, 6: each logical hop crosses 2 links, each link carries the 2 interleaved groups' flows, both
    # directions: bandwidth 2 B / 2 = B; 6 steps of 1 us + 1000 / 1e9 B/s; every byte crosses 2 links
    r = c.collective(ring, "all_reduce", (0, 2, 4, 6), 4000)
    assert r.time_s == pytest.approx(12e-6, rel=1e-12) and r.link_bytes == 2 * 4 * 6000
    # contiguous chips 0..3 of the 8-ring form an open line: one pair of directions, bandwidth B
    line = c.collective(ring, "all_reduce", (0, 1, 2, 3), 4000)
    assert line.time_s == pytest.approx(12e-6, rel=1e-12)
    # the whole ring is closed: two opposite rings, 2 B
    full = c.collective(system("ring", 4), "all_reduce", (0, 1, 2, 3), 4000)
    assert full.time_s == pytest.approx(6 * (1e-6 + 0.5e-6), rel=1e-12)


def test_hierarchical_all_reduce_by_hand():
    # 2 nodes x 4 chips, n = 8000: reduce-scatter in the node 3 (1 us + 2000/1e9) = 9 us; across the 2 nodes a
    # ring all-reduce of 2000 B over the network: 2 (2 us + 1000 / 0.5e9) = 8 us (4 rings in parallel); all-gather
    # in the node 9 us
    h = system("hierarchical", 8, per_node=4)
    r = c.collective(h, "all_reduce", tuple(range(8)), 8000)
    assert r.time_s == pytest.approx(26e-6, rel=1e-12)
    inside = 2 * 4 * 3 / 4 * 8000
    assert r.link_bytes == pytest.approx(inside + 4 * 2 * 2000, rel=1e-12)
    assert r.energy_pj == pytest.approx(inside * 8 * 2.0 + 4 * 2 * 2000 * 8 * 10.0, rel=1e-12)
    # a group inside one node never touches the network
    assert c.collective(h, "all_reduce", (4, 5, 6, 7), 8000) == c.ring_all_reduce(4, 8000, LINK)


def test_trivial_groups_cost_nothing():
    s = system("switch", 8)
    assert c.collective(s, "all_reduce", (3,), 1e6) == c.NONE
    assert c.collective(s, "all_reduce", (0, 1), 0) == c.NONE


def test_more_chips_means_more_steps_and_a_slower_link_means_more_time():
    times = [c.ring_all_reduce(p, 1e6, LINK).time_s for p in (2, 4, 8, 16)]
    assert times == sorted(times)
    assert c.ring_all_reduce(8, 1e6, SLOW).time_s > c.ring_all_reduce(8, 1e6, LINK).time_s
