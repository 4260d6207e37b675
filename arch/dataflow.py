"""Dataflows: the one table of how each dataflow lays a GEMM C[m, n] = sum_k A[m, k] B[k, n] onto a rows x cols
PE array (docs/design.md section 4): which loop the array rows hold (Sr), which the columns (Sc), which streams through
in time (T), and which operand stays in the PEs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dataflow = Literal["ws", "os", "is"]


@dataclass(frozen=True)
class DataflowDims:
    """One dataflow: the loops on array rows and columns, the streamed loop, and the stationary operand."""
    rows: str           # loop mapped to the array rows (Sr)
    cols: str           # loop mapped to the array columns (Sc)
    streamed: str       # loop streamed through the array (T)
    stationary: str     # operand held in the PEs: weight (WS), output (OS) or input (IS)

    @property
    def preloads(self) -> bool:
        """Whether each fold first preloads its stationary operand, R cycles (WS, IS); OS accumulates in place."""
        return self.stationary != "output"

    def spatial(self, m: int, n: int, k: int) -> tuple[int, int, int]:
        """(Sr, Sc, T) of a GEMM with loops m, n, k."""
        sizes = {"m": m, "n": n, "k": k}
        return sizes[self.rows], sizes[self.cols], sizes[self.streamed]


DATAFLOWS: dict[str, DataflowDims] = {
    "ws": DataflowDims(rows="k", cols="n", streamed="m", stationary="weight"),
    "os": DataflowDims(rows="m", cols="n", streamed="k", stationary="output"),
    "is": DataflowDims(rows="k", cols="m", streamed="n", stationary="input"),
}

__all__ = ["DATAFLOWS", "Dataflow", "DataflowDims"]
