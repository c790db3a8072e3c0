"""What every benchmark needs: the machine line, its matmul ceiling, CIFAR-10 unpacked."""

import os
import platform
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARCHIVE = HERE.parent.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"
CACHE = Path(os.environ.get("IMGCLS_BENCH_CACHE", Path.home() / ".cache" / "imgcls-desktop"))


def cifar10_root():
    root = CACHE / "cifar10"
    if not (root / "test").is_dir():
        if not ARCHIVE.exists():
            raise SystemExit(f"CIFAR-10 archive not found at {ARCHIVE}")
        CACHE.mkdir(parents=True, exist_ok=True)
        with tarfile.open(ARCHIVE) as archive:
            archive.extractall(CACHE, filter="data")
    return root


def machine_description():
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}"


def matmul_gflops(size=2048, repeats=10):
    """The machine's practical fp32 ceiling: TensorFlow matmul of two size x size matrices."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    tf.matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        tf.matmul(a, b).numpy()
        times.append(time.perf_counter() - started)
    times.sort()
    return 2 * size**3 / times[len(times) // 2] / 1e9
