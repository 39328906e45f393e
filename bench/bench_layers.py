"""Time the layers of layers.py: forward + backward, median of repeated runs.

    python bench/bench_layers.py [--repeats 7] [--dtype float32 float64] [--malloc-tuning]

Prints one row per (layer, shape, dtype) in milliseconds, and compares the vectorized
convolution with the grader's loop references (grader/references.py) on one small shape. Benchmarks only:
the test suite never asserts on time.

Repeated calls of one layer free and reallocate the same multi-MB arrays, and by default
glibc returns such blocks to the kernel, so every call pays page faults on fresh memory
(often more than the arithmetic). --malloc-tuning reruns this script with glibc's mmap
and trim thresholds raised (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_), which keeps
freed memory in the process; see bench/compare_torch.py for the details.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import layers  # noqa: E402
from grader import references  # noqa: E402

TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}

CONV_SHAPES = [  # N, C, H, W, F, k, pad
    (64, 1, 28, 28, 16, 3, 1),
    (64, 16, 14, 14, 32, 3, 0),
    (64, 1, 28, 28, 32, 5, 0),
    (64, 3, 32, 32, 32, 3, 1),
]


def median_ms(function, repeats):
    function()  # warm-up: first-touch page faults and BLAS start-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def conv_step(x, w, b, pad):
    out, cache = layers.conv2d_forward(x, w, b, stride=1, pad=pad)
    return layers.conv2d_backward(out, cache)


def pool_step(x, pool_param, keep_choices=False):
    out, cache = layers.max_pool_forward(x, pool_param, keep_choices=keep_choices)
    return layers.max_pool_backward(out, cache)


def fc_step(x, w, b):
    out, cache = layers.fc_forward(x, w, b)
    return layers.fc_backward(out, cache)


def naive_conv_step(x, w, dout):
    """The definitions (the grader's loop references), for reference timing only."""
    return references.conv(x, w), *references.conv_backward(x, w, dout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per row (median)")
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    parser.add_argument("--malloc-tuning", action="store_true",
                        help="rerun with glibc's mmap and trim thresholds raised")
    args = parser.parse_args()
    if args.malloc_tuning and TUNED_MALLOC.items() - os.environ.items():
        # glibc reads these at start-up: run this script again in a process that has them
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **TUNED_MALLOC})
    rng = np.random.default_rng(0)
    rows = []
    for dtype in map(np.dtype, args.dtype):
        def randn(*shape):
            return rng.standard_normal(shape).astype(dtype)
        for N, C, H, W, F, k, pad in CONV_SHAPES:
            x, w, b = randn(N, C, H, W), randn(F, C, k, k), randn(F)
            name = f"conv N{N} {C}x{H}x{W} F{F} k{k}" + (f" pad{pad}" if pad else "")
            rows.append((name, dtype, median_ms(lambda: conv_step(x, w, b, pad), args.repeats)))
        x = np.maximum(randn(64, 16, 28, 28), 0)  # after ReLU: many ties at 0
        pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
        rows.append(("max pool N64 16x28x28 2x2/2", dtype,
                     median_ms(lambda: pool_step(x, pool_param), args.repeats)))
        rows.append(("max pool, keep_choices=True", dtype,
                     median_ms(lambda: pool_step(x, pool_param, True), args.repeats)))
        x, w, b = randn(64, 3136), randn(3136, 100), randn(100)
        rows.append(("fc N64 3136->100", dtype, median_ms(lambda: fc_step(x, w, b), args.repeats)))

    print(f"{'layer (forward + backward)':<34} {'dtype':<8} {'ms':>9}")
    for name, dtype, ms in rows:
        print(f"{name:<34} {str(dtype):<8} {ms:9.2f}")

    x, w = rng.standard_normal((4, 3, 12, 12)), rng.standard_normal((8, 3, 3, 3))
    dout = rng.standard_normal((4, 8, 10, 10))
    loops = median_ms(lambda: naive_conv_step(x, w, dout), 3)
    vectorized = median_ms(lambda: layers.conv_backward(dout, layers.conv_forward(x, w)[1]), args.repeats)
    print(f"\nconv N4 3x12x12 F8 k3 float64: loops {loops:.1f} ms, vectorized {vectorized:.3f} ms "
          f"({loops / vectorized:.0f}x faster)")


if __name__ == "__main__":
    main()
