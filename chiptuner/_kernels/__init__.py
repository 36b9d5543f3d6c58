"""Numba kernels: pure functions on arrays and scalars (floor 1 of the house).

One decorator policy everywhere: ``@njit(cache=True, nogil=True)``; realtime kernels
also carry an explicit signature. Nothing here imports from chiptuner outside
``_kernels``, and a kernel that reads untrusted bytes checks every index itself,
because numba does not.
"""
