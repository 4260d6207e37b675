"""Collective communication in closed form: the alpha-beta model of standard algorithms on a system's topology.

A message costs alpha (the link's start-up latency) plus bytes / bandwidth. Per algorithm, for p chips holding n
bytes each (Thakur, Rabenseifner and Gropp, "Optimization of collective communication operations in MPICH",
IJHPCA 2005; Patarasuk and Yuan, "Bandwidth optimal all-reduce algorithms", JPDC 2009):

    ring reduce-scatter / all-gather   (p-1) (alpha + n/(p B))          each chip sends (p-1)/p n
    ring all-reduce                    2 (p-1) (alpha + n/(p B))        each chip sends 2 (p-1)/p n
    tree all-reduce (binary, reduce then broadcast, not pipelined)
                                       2 ceil(log2 p) (alpha + n/B)     link bytes 2 (p-1) n
    direct all-to-all (n/p to each peer at once)
                                       alpha + L / (links B)            L = link bytes summed over hops
    point-to-point                     alpha + n/B
    2-D / 3-D torus all-reduce: reduce-scatter along each dimension's ring in turn (n, n/d1, n/(d1 d2) ...), then
    all-gather in reverse; hierarchical: reduce-scatter in the node, all-reduce of n/k across nodes (each chip on its
    own network port, the k rings in parallel), all-gather in the node.

Contention: B is divided by the flows that share the busiest link (`share`); a ring over a closed torus dimension
or ring topology runs two rings in opposite directions (`lanes` = 2), over an open line one pair of directions
carries both the forward chain and the way back (`lanes` = 1). Energy = bytes carried over links (each hop counted)
x 8 x the link's pJ/bit. Pure functions, no simulation.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from tilesim.arch.system import Link, SystemConfig

KINDS = ("all_reduce", "reduce_scatter", "all_gather", "all_to_all", "p2p")
ALGORITHMS = ("ring", "tree")


@dataclass(frozen=True)
class CommCost:
    """A collective's time, bytes each chip sends (mean over the group), bytes carried over links (every hop of
    every chip summed) and energy."""
    time_s: float = 0.0
    sent_bytes: float = 0.0
    link_bytes: float = 0.0
    energy_pj: float = 0.0
    steps: int = 0

    def then(self, other: CommCost) -> CommCost:
        """This phase followed by another (times and bytes add)."""
        return CommCost(self.time_s + other.time_s, self.sent_bytes + other.sent_bytes,
                        self.link_bytes + other.link_bytes, self.energy_pj + other.energy_pj,
                        self.steps + other.steps)

    def times(self, k: float) -> CommCost:
        """k of these in sequence."""
        return CommCost(self.time_s * k, self.sent_bytes * k, self.link_bytes * k, self.energy_pj * k,
                        round(self.steps * k))


NONE = CommCost()


def _bw(link: Link, lanes: int, share: int) -> float:
    """Bytes/s one flow gets: the link's bandwidth x parallel lanes / flows sharing the busiest link."""
    return link.bytes_per_s * lanes / share


def _energy(link: Link, link_bytes: float) -> float:
    """pJ for bytes carried over links (8 bits a byte)."""
    return link_bytes * 8 * link.pj_per_bit


def ring_reduce_scatter(p: int, n_bytes: float, link: Link, lanes: int = 1, share: int = 1,
                        hops: int = 1) -> CommCost:
    """Ring reduce-scatter: p-1 steps, each chip sends one n/p chunk a step to its neighbour (hops links away)."""
    if p <= 1 or n_bytes <= 0:
        return NONE
    chunk = n_bytes / p
    sent = (p - 1) * chunk
    return CommCost((p - 1) * (link.latency_s + chunk / _bw(link, lanes, share)), sent, p * sent * hops,
                    _energy(link, p * sent * hops), p - 1)


def ring_all_gather(p: int, n_bytes: float, link: Link, lanes: int = 1, share: int = 1, hops: int = 1) -> CommCost:
    """Ring all-gather of n bytes in all (n/p from each chip): the same steps and bytes as reduce-scatter."""
    return ring_reduce_scatter(p, n_bytes, link, lanes, share, hops)


def ring_all_reduce(p: int, n_bytes: float, link: Link, lanes: int = 1, share: int = 1, hops: int = 1) -> CommCost:
    """Ring all-reduce = reduce-scatter then all-gather: 2(p-1) steps, 2(p-1)/p n sent per chip."""
    rs = ring_reduce_scatter(p, n_bytes, link, lanes, share, hops)
    return rs.then(rs)


def tree_all_reduce(p: int, n_bytes: float, link: Link, lanes: int = 1, share: int = 1, hops: int = 1) -> CommCost:
    """Binary-tree reduce to a root, then broadcast, whole messages: 2 ceil(log2 p) steps of alpha + n/B; every
    tree edge carries n each way (2 (p-1) n link bytes)."""
    if p <= 1 or n_bytes <= 0:
        return NONE
    steps = 2 * math.ceil(math.log2(p))
    carried = 2 * (p - 1) * n_bytes * hops
    return CommCost(steps * (link.latency_s + n_bytes / _bw(link, lanes, share)), 2 * (p - 1) * n_bytes / p,
                    carried, _energy(link, carried), steps)


def direct_all_to_all(p: int, n_bytes: float, link: Link, directed_links: int, mean_hops: float = 1.0) -> CommCost:
    """Each chip sends n/p to every other chip at once (one step); with ideal routing the load spreads over the
    group's directed links: time = alpha + link bytes / (links x B)."""
    if p <= 1 or n_bytes <= 0:
        return NONE
    sent = (p - 1) * n_bytes / p
    carried = p * sent * mean_hops
    return CommCost(link.latency_s + carried / (directed_links * link.bytes_per_s), sent, carried,
                    _energy(link, carried), 1)


def point_to_point(n_bytes: float, link: Link, hops: int = 1, share: int = 1) -> CommCost:
    """One chip sends n bytes to another: alpha + n/B (B shared by `share` flows)."""
    if n_bytes <= 0:
        return NONE
    return CommCost(link.latency_s + n_bytes / _bw(link, 1, share), n_bytes, n_bytes * hops,
                    _energy(link, n_bytes * hops), 1)


@dataclass(frozen=True)
class Ring:
    """One dimension of a group's layout: `size` chips, `hops` links apart, closed (wrap-around) or an open line,
    `share` flows of concurrent groups on each of its links."""
    size: int
    hops: int
    closed: bool
    share: int

    @property
    def lanes(self) -> int:
        """Two opposite rings on a closed dimension, one pair of directions on a line."""
        return 2 if self.closed else 1


def dimension_ordered(rings: tuple[Ring, ...], kind: str, n_bytes: float, link: Link) -> CommCost:
    """Reduce-scatter, all-gather or all-reduce over a torus sub-box: ring reduce-scatter along each dimension in
    turn on what is left (n, n/d1, ...), all-gather back in reverse; one dimension is the plain ring algorithm."""
    cost, left = NONE, n_bytes
    phases = []
    for r in rings:
        phases.append((r, left))
        left /= r.size
    if kind in ("reduce_scatter", "all_reduce"):
        for r, size in phases:
            cost = cost.then(ring_reduce_scatter(r.size, size, link, r.lanes, r.share, r.hops))
    if kind in ("all_gather", "all_reduce"):
        for r, size in reversed(phases):
            cost = cost.then(ring_all_gather(r.size, size, link, r.lanes, r.share, r.hops))
    return cost


def _coords(chip: int, dims: tuple[int, ...]) -> tuple[int, ...]:
    """A chip's torus coordinates, the first dimension fastest."""
    out = []
    for d in dims:
        out.append(chip % d)
        chip //= d
    return tuple(out)


def group_rings(dims: tuple[int, ...], members: tuple[int, ...]) -> tuple[Ring, ...]:
    """The rings a group of chips forms on a torus (a ring topology is a 1-D torus): per dimension it spans, its
    extent, spacing (hops between members, also the number of interleaved groups sharing those links) and whether
    it wraps the whole dimension."""
    coords = [_coords(c, dims) for c in members]
    rings = []
    for axis, d in enumerate(dims):
        values = sorted({c[axis] for c in coords})
        if len(values) < 2:
            continue
        spacing = min(b - a for a, b in itertools.pairwise(values))
        closed = len(values) * spacing == d
        rings.append(Ring(len(values), spacing, closed, spacing))
    return tuple(rings)


def _torus_hops(a: tuple[int, ...], b: tuple[int, ...], dims: tuple[int, ...]) -> int:
    """Shortest path between two torus coordinates (wrap-around links in every dimension)."""
    return sum(min(abs(x - y), d - abs(x - y)) for x, y, d in zip(a, b, dims, strict=True))


def torus_dims(system: SystemConfig) -> tuple[int, ...]:
    """The torus shape of a ring or torus system (a ring is one dimension)."""
    return system.dims if system.topology.startswith("torus") else (system.chips,)


def collective(system: SystemConfig, kind: str, members: tuple[int, ...], n_bytes: float,
               algorithm: str = "ring") -> CommCost:
    """A collective among `members` (chip ids) of n bytes per chip on the system's topology: switch and node
    levels run the ring (or tree) algorithm at each chip's port bandwidth, tori run dimension-ordered rings,
    hierarchical systems reduce in the node, across nodes, and back; all-to-all is direct; p2p goes from the first
    member to the second."""
    p = len(members)
    if p <= 1 or n_bytes <= 0:
        return NONE
    if kind == "p2p":
        return _p2p(system, members[0], members[1], n_bytes)
    if system.topology == "hierarchical":
        return _hierarchical(system, kind, members, n_bytes, algorithm)
    if system.topology == "switch":
        return _flat(kind, p, n_bytes, system.link, algorithm, directed_links=p)
    dims = torus_dims(system)
    if kind == "all_to_all":      # load over the group's own links (shared ones count once per group sharing them)
        coords = [_coords(c, dims) for c in members]
        hops = sum(_torus_hops(a, b, dims) for a in coords for b in coords) / (p * (p - 1))
        rings = group_rings(dims, members)
        directed = sum(p // r.size * 2 * (r.size if r.closed else r.size - 1) for r in rings)
        return direct_all_to_all(p, n_bytes, system.link, max(directed, 1), hops)
    if algorithm == "tree" and kind == "all_reduce":
        coords = [_coords(c, dims) for c in members]
        hops = max(_torus_hops(coords[0], c, dims) for c in coords)
        return tree_all_reduce(p, n_bytes, system.link, 1, 1, hops)
    return dimension_ordered(group_rings(dims, members), kind, n_bytes, system.link)


def _flat(kind: str, p: int, n_bytes: float, link: Link, algorithm: str, directed_links: int) -> CommCost:
    """A collective over a full-bandwidth switch (every chip one port of `link`)."""
    if kind == "all_to_all":
        return direct_all_to_all(p, n_bytes, link, directed_links)
    if kind == "all_reduce":
        return (tree_all_reduce if algorithm == "tree" else ring_all_reduce)(p, n_bytes, link)
    return ring_reduce_scatter(p, n_bytes, link)


def _hierarchical(system: SystemConfig, kind: str, members: tuple[int, ...], n_bytes: float,
                  algorithm: str) -> CommCost:
    """Nodes of chips on a switch, nodes joined by the network (one port per chip)."""
    k = system.chips_per_node
    nodes = sorted({c // k for c in members})
    per_node = len(members) // len(nodes)
    if len(nodes) == 1:
        return _flat(kind, len(members), n_bytes, system.link, algorithm, len(members))
    assert system.network is not None
    if kind == "all_to_all":      # the share leaving the node crosses the network; inside stays on the switch
        p = len(members)
        inside = direct_all_to_all(per_node, n_bytes * per_node / p, system.link, per_node)
        outside = direct_all_to_all(p, n_bytes * (p - per_node) / (p - 1), system.network, p) if p > 1 else NONE
        return inside.then(outside)
    rs_in = ring_reduce_scatter(per_node, n_bytes, system.link)
    one = _flat(kind, len(nodes), n_bytes / per_node, system.network, algorithm, len(nodes))
    # per_node rings across nodes, one per chip's network port, in parallel: one ring's time, per_node rings' bytes
    across = CommCost(one.time_s, one.sent_bytes, one.link_bytes * per_node, one.energy_pj * per_node, one.steps)
    if kind == "reduce_scatter":
        return rs_in.then(across)
    if kind == "all_gather":
        return across.then(rs_in)
    return rs_in.then(across).then(rs_in)


def _p2p(system: SystemConfig, a: int, b: int, n_bytes: float) -> CommCost:
    """Point-to-point between two chips: over the switch, the network between nodes, or the torus path."""
    if system.topology == "switch":
        return point_to_point(n_bytes, system.link)
    if system.topology == "hierarchical":
        k = system.chips_per_node
        return point_to_point(n_bytes, system.link if a // k == b // k else system.network)
    dims = torus_dims(system)
    return point_to_point(n_bytes, system.link, hops=max(_torus_hops(_coords(a, dims), _coords(b, dims), dims), 1))
