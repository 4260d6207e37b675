"""The `tilesim` command line.

The simulator does no linear algebra, so the command line starts numpy's OpenBLAS with one thread (unless the user
set OPENBLAS_NUM_THREADS): its thread pool, started when numpy loads, costs ~0.1 CPU second a run."""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
