"""Shared pieces of the benchmark harness: the step registry, result rows, timing, memory,
machine facts and synthetic inputs (random embeddings, JPEG files).

Nothing here does work at import time; every step imports the heavy libraries it needs
inside its own function so that ``run.py --help`` stays instant.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fashion_retrieval.registry import Registry

StepFn = Callable[["StepContext"], list["Row"]]

# name -> step function; each bench_*.py module registers its steps here.
BENCHMARKS: Registry[list] = Registry("benchmark")

# The order in which a full run executes the steps (cheap ones first).
DEFAULT_ORDER = ("embedding", "latency", "session", "build_index", "ann", "evaluation", "training", "startup", "realscale")


@dataclass
class StepContext:
    """What a step gets: the run mode and a scratch folder it may fill.

    ``tiny`` (``run.py --tiny``, which implies ``quick``) shrinks every size so that each
    step runs in seconds: it checks that the steps work, its figures mean nothing.
    """

    quick: bool
    workdir: Path
    options: dict[str, Any] = field(default_factory=dict)
    analysis: list[str] = field(default_factory=list)  # "what bounds this figure" notes
    tiny: bool = False

    def size(self, sizes: dict[bool, Any], tiny: Any) -> Any:
        """``tiny`` in a tiny run, else ``sizes[quick]`` (a step's table of sizes per mode)."""
        return tiny if self.tiny else sizes[self.quick]


class SkipStep(Exception):
    """Raised by a step that cannot or should not run in this mode; the reason is reported."""


@dataclass
class Row:
    """One line of the benchmark table.

    ``value`` is the figure measured, ``baseline`` the obvious alternative measured in the
    same run (``None`` where there is none), ``target`` the goal in words and ``passed``
    whether it was met (``None``: reported only, or not measured).
    """

    figure: str
    measure: str
    value: float | None
    unit: str
    baseline_name: str = ""
    baseline: float | None = None
    target: str = ""
    passed: bool | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the row."""
        return asdict(self)


def register(name: str) -> Callable[[StepFn], StepFn]:
    """Decorator: register a benchmark step under ``name``."""
    return BENCHMARKS.register(name)


def log(message: str) -> None:
    """A progress line on stderr (long steps say what they are doing)."""
    import sys

    print(f"[benchmarks]   {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- timing


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values`` by linear interpolation."""
    if not values:
        raise ValueError("percentile of an empty list")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def time_repeated(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times; seconds per call."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def best_rate(count: int, seconds: list[float]) -> float:
    """Items per second from the median of several timings of ``count`` items."""
    return count / statistics.median(seconds)


# --------------------------------------------------------------------------- memory


def max_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size of this process (or its waited-for children) in MiB."""
    kb = resource.getrusage(who).ru_maxrss  # KiB on Linux
    return kb / 1024.0


def current_rss_mb() -> float:
    """Current resident set size of this process in MiB (from /proc, no psutil needed)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakSampler:
    """Samples this process's RSS in a thread; ``peak_mb - start_mb`` is what a block added.

    ``ru_maxrss`` only ever grows, so it cannot tell what one phase of a step allocated;
    sampling every few milliseconds can (anything held for longer than the interval, such
    as a query x gallery matrix, is seen).
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.start_mb = 0.0
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, current_rss_mb())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakSampler:
        self.start_mb = self.peak_mb = current_rss_mb()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak_mb = max(self.peak_mb, current_rss_mb())

    @property
    def added_mb(self) -> float:
        """Peak RSS during the block minus RSS at its start, in MiB."""
        return self.peak_mb - self.start_mb


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Facts that make a figure reproducible: CPUs, torch threads, library versions, GPU."""
    import faiss  # noqa: F401  (version below)
    import numpy as np
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(mem_gb, 1),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "platform": platform.platform(),
    }


# --------------------------------------------------------------------------- inputs


def random_unit_embeddings(n: int, dim: int, seed: int = 0, chunk: int = 100_000):
    """``(n, dim)`` float32 rows uniform on the unit sphere, generated in chunks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def structured_unit_embeddings(
    n: int,
    dim: int,
    intrinsic: int = 32,
    clusters: int = 1000,
    spread: float = 1.0,
    ambient: float = 0.3,
    seed: int = 0,
    centre_seed: int = 12345,
    chunk: int = 100_000,
):
    """``(n, dim)`` unit rows with the structure of real embeddings, not uniform on the sphere.

    Image embeddings lie near a low-dimensional manifold; points uniform on the 512-d sphere
    are the worst case for any approximate index. Here: a Gaussian mixture (``clusters``
    centres with unit spread, each point ``spread`` around its centre) in a random
    ``intrinsic``-dimensional subspace, plus isotropic noise of relative norm ``ambient`` in
    all ``dim`` dimensions. Calls with the same ``centre_seed`` share centres and subspace;
    ``seed`` picks the points.
    """
    import numpy as np

    crng = np.random.default_rng(centre_seed)
    centres = crng.standard_normal((clusters, intrinsic)).astype(np.float32)  # (C, I)
    basis = np.linalg.qr(crng.standard_normal((dim, intrinsic)))[0].T.astype(np.float32)  # (I, D)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        z = centres[rng.integers(0, clusters, m)]
        z += spread * rng.standard_normal((m, intrinsic), dtype=np.float32)  # (m, I)
        x = z @ basis  # (m, D)
        noise = rng.standard_normal((m, dim), dtype=np.float32)
        x += noise * (ambient / np.sqrt(dim) * np.linalg.norm(z, axis=1, keepdims=True))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start : start + m] = x
    return out


def write_jpegs(
    folder: Path, count: int, size: tuple[int, int] = (300, 400), seed: int = 0
) -> list[Path]:
    """Write ``count`` photo-like JPEG files (smooth colour fields plus texture) to ``folder``.

    Sized like catalogue photos so decoding costs what it costs in practice; files already
    there are reused.
    """
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(count):
        path = folder / f"img_{i:05d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        a, b, c = rng.uniform(0.005, 0.05, 3)
        base = rng.uniform(40, 215, 3)
        img = np.stack(
            [base[j] + 40 * np.sin(a * xx + b * yy * (j + 1) + c) for j in range(3)], axis=-1
        )
        img += rng.normal(0, 12, img.shape)  # texture, so JPEG does not compress to nothing
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
    return paths


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (``None``: leave it)."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
