"""The only place numba lives: pure njit(cache=True) kernels over numpy arrays, each with a Python reference."""
