"""Mixture-of-experts routing in expectation: which experts a step's tokens touch and how many tokens each gets.

Each token picks `top_k` distinct experts out of `experts`. Expert e is chosen by a token with probability q_e
(sum of q_e = top_k). Tokens route independently, so e is left untouched by all T tokens with probability
(1 - q_e)^T and, by linearity of expectation, the expected number of distinct experts touched is
    E[D] = sum_e 1 - (1 - q_e)^T.
Uniform routing (skew 0): every k-subset is equally likely, so q_e = C(E-1, k-1) / C(E, k) = k/E and
E[D] = E * (1 - (1 - k/E)^T): k at T = 1, tending to E as T grows.
Skewed routing (skew s > 0): q_e proportional to (e + 1)^-s (Zipf-like, expert 0 the most popular), scaled so that
they sum to k; a q_e that would exceed 1 is capped at 1 and the rest rescaled (a token picks an expert at most once).
"""
from __future__ import annotations

from dataclasses import dataclass

from tilesim.arch.errors import InputError

SKEW_GROUPS = 4     # skewed routing: experts are grouped by popularity rank into this many groups of equal size


def selection_probs(experts: int, top_k: int, skew: float = 0.0) -> tuple[float, ...]:
    """q_e = P(one token selects expert e), e = 0..experts-1: k/E each when skew is 0, else Zipf-like (see above)."""
    if not 1 <= top_k <= experts:
        raise InputError(f"num_experts_per_tok: must be between 1 and the number of experts ({experts}), got {top_k}")
    if skew < 0:
        raise InputError(f"expert_skew: must be >= 0 (0: uniform routing), got {skew:g}")
    weights = [(e + 1) ** -skew for e in range(experts)]
    q = [0.0] * experts
    capped: set[int] = set()
    while True:          # water-filling: cap at 1, spread the remaining budget over the others in proportion
        free = [e for e in range(experts) if e not in capped]
        budget = top_k - len(capped)
        total = sum(weights[e] for e in free)
        over = [e for e in free if budget * weights[e] / total >= 1]
        if not over:
            for e in free:
                q[e] = budget * weights[e] / total
            return tuple(q)
        for e in over:
            q[e] = 1.0
            capped.add(e)


def expected_distinct_experts(probs: tuple[float, ...], tokens: int) -> float:
    """E[D] = sum_e 1 - (1 - q_e)^T: experts that at least one of `tokens` tokens selects, in expectation."""
    return sum(1 - (1 - q) ** tokens for q in probs)


def expected_tokens_per_expert(probs: tuple[float, ...], tokens: int) -> tuple[float, ...]:
    """T * q_e: the expected tokens each expert processes in a step (its load); they sum to T * top_k."""
    return tuple(tokens * q for q in probs)


@dataclass(frozen=True)
class ExpertSet:
    """Touched experts that each multiply `tokens` tokens, laid side by side: `columns` intermediate columns in all
    (experts x expert FFN size, fractional experts in expectation, rounded to whole columns)."""
    tokens: int
    columns: int


def expert_sets(probs: tuple[float, ...], tokens: int, expert_ffn: int) -> tuple[ExpertSet, ...]:
    """The routed experts of one step as sets of equal load, so that a grouped GEMM over them reads the expected
    touched experts' weights, sum_e P(touched_e) x expert_ffn columns, and does the expected token x expert work,
    sum_e T q_e x expert_ffn token-columns. Experts of equal popularity (all of them when routing is uniform, else
    SKEW_GROUPS rank groups) share a mean load m = token-columns / columns >= 1, split into floor(m) and
    floor(m) + 1 token sets whose column counts make both sums exact (to one column)."""
    order = sorted(range(len(probs)), key=lambda e: -probs[e])
    uniform = max(probs) - min(probs) < 1e-12
    n_groups = 1 if uniform else min(SKEW_GROUPS, len(probs))
    size = -(-len(order) // n_groups)
    out = []
    for g in range(n_groups):
        group = order[g * size:(g + 1) * size]
        columns = round(sum(1 - (1 - probs[e]) ** tokens for e in group) * expert_ffn)
        work = round(sum(tokens * probs[e] for e in group) * expert_ffn)      # token x column products
        if columns == 0:
            continue
        low = max(work // columns, 1)
        high_columns = min(max(work - low * columns, 0), columns)             # columns that take low + 1 tokens
        out += [ExpertSet(m, c) for m, c in ((low, columns - high_columns), (low + 1, high_columns)) if c]
    return tuple(out)
