"""What the benchmarks ran on, and the two reference speeds one-pass kernels are judged by.

- :func:`cpu_model`: the CPU's name from ``/proc/cpuinfo`` (what a table must name).
- :func:`blas_libraries`: the BLAS / OpenMP libraries this process actually loaded, with
  version, kernel architecture and threads (threadpoolctl), e.g. ``openblas 0.3.30
  SkylakeX x1 (libscipy_openblas)``.
- :func:`read_seconds`: the time of one compiled pass that only reads a block (sums
  every value, vectorised, no stores): the memory-read bound of a one-pass algorithm.
- :func:`gemm_gflops`: ``dgemm`` / ``sgemm`` on square, cache-resident tiles, the
  core's practical peak that the cross-product kernels are compared with.

Every measurement is single-threaded in-process and the best of ``repeat``: on a shared
machine the minimum is the least disturbed run.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["cpu_model", "blas_libraries", "blas_summary", "read_seconds", "gemm_gflops", "best_of"]


def cpu_model() -> str:
    """The first CPU of /proc/cpuinfo: model name, family / model numbers, AVX-512, CPU count."""
    info, count = {}, 0
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "processor":
                    count += 1
                if count == 1 and key in ("model name", "cpu family", "model", "flags"):
                    info[key] = value.strip()
    except OSError:
        return "unknown CPU"
    name = info.get("model name", "unknown CPU")
    extra = [f"family {info['cpu family']} model {info['model']}"] if "cpu family" in info else []
    if "avx512f" in info.get("flags", "").split():
        extra.append("AVX-512")
    extra.append(f"{count} logical CPUs")
    return f"{name} ({', '.join(extra)})"


def blas_libraries() -> list:
    """threadpoolctl's view of the loaded BLAS / OpenMP libraries (list of dicts)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency of scikit-learn
        return []
    keep = ("internal_api", "version", "architecture", "num_threads", "filepath")
    return [{k: info.get(k) for k in keep} for info in threadpool_info()]


def blas_summary(libs=None) -> str:
    """One line: ``openblas 0.3.30 SkylakeX x1 (libscipy_openblas-...so); ...``."""
    libs = blas_libraries() if libs is None else libs
    parts = []
    for lib in libs:
        name = (lib.get("filepath") or "").rsplit("/", 1)[-1]
        arch = f" {lib['architecture']}" if lib.get("architecture") else ""
        parts.append(f"{lib.get('internal_api')} {lib.get('version')}{arch} "
                     f"x{lib.get('num_threads')} ({name})")
    return "; ".join(sorted(set(parts))) or "no BLAS seen by threadpoolctl"


def best_of(fn, repeat: int = 5, clock=time.perf_counter) -> float:
    """Smallest time of ``repeat`` calls of ``fn()`` by ``clock`` (wall time by default).

    ``clock=time.thread_time`` counts only the CPU time this thread got: on a
    machine shared with other jobs it is far steadier than wall time for a
    single-threaded kernel (memory stalls count; waiting for a core does not).
    """
    best = float("inf")
    for _ in range(repeat):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


_READ = []


def _read_all():
    """The compiled read loop (numba imported here: daal4py's environment has no numba)."""
    if not _READ:
        from numba import njit

        @njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
        def read_all(flat):
            acc = 0.0
            for i in range(flat.shape[0]):
                acc += flat[i]
            return acc

        _READ.append(read_all)
    return _READ[0]


def read_seconds(arrays, repeat: int = 5, clock=time.perf_counter) -> float:
    """Time to read every value of ``arrays`` once (best of ``repeat``).

    A vectorised sum of each array as one flat vector: loads only, so its time
    is what any one-pass algorithm over the same arrays must at least take.
    """
    read_all = _read_all()
    flats = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    for f in flats:                     # compile / load outside the clock
        read_all(f[:16])
    return best_of(lambda: [read_all(f) for f in flats], repeat, clock)


def gemm_gflops(n: int = 256, dtype=np.float64, repeat: int = 20) -> float:
    """GFLOP/s of ``A @ B`` on n x n tiles (cache-resident at n = 256)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n)).astype(dtype)
    B = rng.standard_normal((n, n)).astype(dtype)
    C = np.empty((n, n), dtype=dtype)
    np.matmul(A, B, out=C)
    return 2.0 * n ** 3 / best_of(lambda: np.matmul(A, B, out=C), repeat) / 1e9
