"""The simulator core: tile commands, numba kernels and their Python references, simulate, energy fold, results."""
