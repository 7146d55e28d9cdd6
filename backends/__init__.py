"""pktflow's built-in ring backends: ``pure``, ``numba`` and ``hugepage``.

They are found by name through ``pktflow.get_backend``; import nothing from
here directly except the jitted kernels in ``pktflow.backends.jit``.
"""
