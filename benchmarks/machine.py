"""What every benchmark needs: the machine line, its matmul ceiling, CIFAR-10 unpacked."""

import os
import platform
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARCHIVE = HERE.parent.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"
TRASHNET_ARCHIVE = HERE.parent.parent / "shared" / "datasets" / "trashnet-jpg.tar.gz"
CACHE = Path(os.environ.get("IMGCLS_BENCH_CACHE", Path.home() / ".cache" / "imgcls-desktop"))


def cifar10_root():
    return _unpacked(ARCHIVE, "cifar10")


def trashnet_root():
    """TrashNet's real phone photos (train/test class folders), unpacked outside the repo."""
    return _unpacked(TRASHNET_ARCHIVE, "trashnet")


def _unpacked(archive_path, name):
    root = CACHE / name
    if not (root / "test").is_dir():
        if not archive_path.exists():
            raise SystemExit(f"{name} archive not found at {archive_path}")
        CACHE.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive_path) as archive:
            archive.extractall(CACHE, filter="data")
    return root


def limited_per_class(items, per_class):
    """The first ``per_class`` items of each label, in order (all of them when 0/None)."""
    if not per_class:
        return list(items)
    kept, counts = [], {}
    for item in items:
        if counts.get(item.label, 0) < per_class:
            counts[item.label] = counts.get(item.label, 0) + 1
            kept.append(item)
    return kept


def machine_description():
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu} ({vector_extensions()}), {platform.system()} {platform.release()}"


def vector_extensions():
    """The SIMD level that decides TensorFlow's kernels: "AVX2 + FMA" or "AVX-512 (VNNI, BF16)"."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown vector extensions"
    if "avx512f" in flags:
        extras = [name for flag, name in (("avx512_vnni", "VNNI"), ("avx512_bf16", "BF16"), ("amx_tile", "AMX"))
                  if flag in flags]
        return "AVX-512" + (f" ({', '.join(extras)})" if extras else "")
    if "avx2" in flags:
        return "AVX2 + FMA" if "fma" in flags else "AVX2"
    return "no AVX2"


def matmul_gflops(size=2048, repeats=10):
    """The machine's practical fp32 ceiling: the faster of TensorFlow's matmul (oneDNN or
    Eigen, as this process loaded it) and NumPy's (OpenBLAS) on two size x size matrices."""
    import numpy as np
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    x, y = a.numpy(), b.numpy()
    rates = []
    for product in (lambda: tf.matmul(a, b).numpy(), lambda: np.matmul(x, y)):
        product()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            product()
            times.append(time.perf_counter() - started)
        times.sort()
        rates.append(2 * size**3 / times[len(times) // 2] / 1e9)
    return max(rates)


def write_results(stem, lines):
    """Write a results table as ``benchmarks/results/STEM.md`` and show it."""
    out = HERE / "results" / f"{stem}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")
    return out
