"""Sparse Cholesky factorisation with Intel MKL's PARDISO, for ROAD's imputation systems.

ROAD (:mod:`.road`) solves one symmetric positive definite system per removal mask, thousands per
report. SciPy has no sparse Cholesky; its SuperLU factorises the system as a general one. PARDISO
factorises it as symmetric, supernode by supernode with dense kernels; with its two-level algorithm
(``iparm[23] = 10``) a mask of the report costs 2.4 times less than with SuperLU, building and
solving included (``benchmarks/bench_road.py``: 16.6 against 39.8 ms per mask, two at a time, on
two cores). MKL comes from PyPI's ``mkl`` wheel (x86-64 only); where it is missing, :mod:`.road`
falls back to SuperLU.

MKL runs with its sequential threading layer: ROAD already solves several masks at once in Python
threads, and ctypes releases the GIL during each call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import threading
import weakref
from functools import lru_cache

import numpy as np

_INT = ctypes.c_int32  # MKL's LP64 interface, set explicitly below
_SPD = 2  # PARDISO's matrix type: real symmetric positive definite
_SEQUENTIAL, _LP64 = 1, 0
_ERRORS = {
    -1: "input inconsistent",
    -2: "not enough memory",
    -3: "reordering problem",
    -4: "zero or negative pivot: the matrix is not positive definite",
    -5: "unclassified internal error",
    -6: "reordering failed",
    -7: "diagonal matrix is singular",
    -8: "32-bit integer overflow",
    -9: "not enough memory for out-of-core",
    -10: "error opening out-of-core files",
    -11: "read/write error with out-of-core files",
    -12: "wrong pardiso_64 call",
    -13: "interrupted by the mkl_progress function",
}


def _library_path() -> str | None:
    """Where the ``mkl`` wheel put ``libmkl_rt`` (or the system's copy), None if nowhere."""
    try:
        files = importlib.metadata.distribution("mkl").files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name.startswith(("libmkl_rt.so", "mkl_rt.", "libmkl_rt.")) and not file.name.endswith(".a"):
            return str(file.locate())
    return ctypes.util.find_library("mkl_rt")


@lru_cache(maxsize=1)
def _mkl() -> ctypes.CDLL | None:
    path = _library_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    # both must come before any other MKL call; each returns the layer in force
    lib.MKL_Set_Interface_Layer.restype = ctypes.c_int
    lib.MKL_Set_Threading_Layer.restype = ctypes.c_int
    if lib.MKL_Set_Interface_Layer(_LP64) != _LP64:
        return None
    if lib.MKL_Set_Threading_Layer(_SEQUENTIAL) != _SEQUENTIAL:
        lib.MKL_Set_Num_Threads(1)  # another user loaded MKL threaded first: one thread is the same thing
    lib.pardiso.restype = None
    return lib


def available() -> bool:
    """Whether MKL's PARDISO can be loaded here."""
    return _mkl() is not None


def _pointer(array: np.ndarray) -> ctypes.c_void_p:
    return array.ctypes.data_as(ctypes.c_void_p)


def _call(
    lib: ctypes.CDLL,
    handle: np.ndarray,
    phase: int,
    iparm: np.ndarray,
    n: int,
    matrix: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    rhs: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> None:
    """One PARDISO call; ``matrix`` is (data, indptr, indices, order), unused by phase -1."""
    dummy = np.zeros(1)
    data, indptr, indices, order = matrix if matrix is not None else (dummy, dummy, dummy, dummy)
    error = _INT(0)
    lib.pardiso(
        _pointer(handle),
        ctypes.byref(_INT(1)),  # maxfct
        ctypes.byref(_INT(1)),  # mnum
        ctypes.byref(_INT(_SPD)),
        ctypes.byref(_INT(phase)),
        ctypes.byref(_INT(n)),
        _pointer(data),
        _pointer(indptr),
        _pointer(indices),
        _pointer(order),
        ctypes.byref(_INT(1 if rhs is None else rhs.shape[0])),
        _pointer(iparm),
        ctypes.byref(_INT(0)),  # msglvl: silent
        _pointer(dummy if rhs is None else rhs),
        _pointer(dummy if out is None else out),
        ctypes.byref(error),
    )
    if error.value:
        raise RuntimeError(f"PARDISO phase {phase}: {_ERRORS.get(error.value, 'error')} ({error.value})")


class CholeskyFactor:
    """``A = L L^T`` of a symmetric positive definite ``A`` given by its upper triangle, in the
    caller's elimination order (no reordering: the caller numbers the unknowns well).

    ``indptr``, ``indices``, ``data``: the upper triangle (diagonal included) in CSR form, zero-based,
    column indices increasing within each row. The factor's memory is MKL's; it is released by
    :meth:`close`, when the object is collected, or at exit.
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> None:
        lib = _mkl()
        if lib is None:
            raise RuntimeError("MKL's PARDISO is not available here (pip install mkl)")
        self._lib = lib
        self.n = len(indptr) - 1
        self._matrix = (
            np.ascontiguousarray(data, dtype=np.float64),
            np.ascontiguousarray(indptr, dtype=np.int32),
            np.ascontiguousarray(indices, dtype=np.int32),
            np.arange(self.n, dtype=np.int32),  # the identity: the caller's order is the elimination order
        )
        self._handle = np.zeros(64, dtype=np.int64)  # PARDISO's internal pointers
        self._iparm = np.zeros(64, dtype=np.int32)
        self._iparm[[0, 4, 23, 34]] = (1, 1, 10, 1)  # own settings; user order; two-level factorisation; 0-based
        self._lock = threading.Lock()
        # released when collected or at exit (weakref.finalize runs at exit, before modules go); set
        # up first, so that a factorisation that fails still gives back what it allocated
        self._release = weakref.finalize(self, _call, lib, self._handle, -1, self._iparm.copy(), self.n)
        _call(lib, self._handle, 12, self._iparm, self.n, self._matrix)  # analysis and factorisation

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``A^-1`` applied to each row of ``rhs`` (k, n): one forward and one backward pass for all k."""
        rhs = np.ascontiguousarray(rhs, dtype=np.float64)
        if rhs.ndim != 2 or rhs.shape[1] != self.n:
            raise ValueError(f"right-hand sides must be (k, {self.n}), not {rhs.shape}")
        out = np.empty_like(rhs)
        with self._lock:  # one handle: its solves take turns
            if not self._release.alive:
                raise RuntimeError("this factor was closed")
            _call(self._lib, self._handle, 33, self._iparm, self.n, self._matrix, rhs, out)
        # the two-level factorisation reports a zero pivot but not a negative one: its square root
        # is NaN, which reaches every solution that depends on it
        if not np.isfinite(out).all() and np.isfinite(rhs).all():
            raise RuntimeError("PARDISO's solution is not finite: the matrix is not positive definite")
        return out

    def close(self) -> None:
        """Release MKL's memory for this factor now."""
        with self._lock:
            self._release()
