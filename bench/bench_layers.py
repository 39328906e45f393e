"""Time the layers: forward + backward, median of repeated runs.

    python bench/bench_layers.py [--repeats 7] [--dtype float32 float64] [--malloc-tuning]

Prints one row per (layer, shape, dtype) in milliseconds: the fast kernels of kernels.py
(what the models train with) beside the reference versions of layers.py (what a learner
reads), and compares both with the grader's loop references (grader/references.py) on
one small shape. Benchmarks only: the test suite never asserts on time.

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
import kernels  # noqa: E402
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


def conv_step(module, x, w, b, pad):
    out, cache = module.conv2d_forward(x, w, b, stride=1, pad=pad)
    return module.conv2d_backward(out, cache)


def pool_step(module, x, pool_param, **options):
    out, cache = module.max_pool_forward(x, pool_param, **options)
    return module.max_pool_backward(out, cache)


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
            rows.append((name, dtype,
                         median_ms(lambda: conv_step(kernels, x, w, b, pad), args.repeats),
                         median_ms(lambda: conv_step(layers, x, w, b, pad), args.repeats)))
        x = np.maximum(randn(64, 16, 28, 28), 0)  # after ReLU: many ties at 0
        pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
        rows.append(("max pool N64 16x28x28 2x2/2", dtype,
                     median_ms(lambda: pool_step(kernels, x, pool_param), args.repeats),
                     median_ms(lambda: pool_step(layers, x, pool_param), args.repeats)))
        rows.append(("max pool, keep_choices=True", dtype,
                     median_ms(lambda: pool_step(kernels, x, pool_param, keep_choices=True),
                               args.repeats), None))
        x, w, b = randn(64, 3136), randn(3136, 100), randn(100)
        rows.append(("fc N64 3136->100", dtype, None,
                     median_ms(lambda: fc_step(x, w, b), args.repeats)))

    print(f"{'layer (forward + backward)':<34} {'dtype':<8} {'kernels.py ms':>14} "
          f"{'layers.py ms':>13} {'ratio':>6}")
    for name, dtype, fast, reference in rows:
        cells = [f"{fast:14.2f}" if fast else f"{'-':>14}",
                 f"{reference:13.2f}" if reference else f"{'-':>13}",
                 f"{reference / fast:6.1f}" if fast and reference else f"{'':>6}"]
        print(f"{name:<34} {str(dtype):<8} " + " ".join(cells))

    x, w = rng.standard_normal((4, 3, 12, 12)), rng.standard_normal((8, 3, 3, 3))
    dout = rng.standard_normal((4, 8, 10, 10))
    loops = median_ms(lambda: naive_conv_step(x, w, dout), 3)
    def vectorized(module):
        return median_ms(lambda: module.conv_backward(dout, module.conv_forward(x, w)[1]),
                         args.repeats)
    fast, reference = vectorized(kernels), vectorized(layers)
    print(f"\nconv N4 3x12x12 F8 k3 float64: loops {loops:.1f} ms, layers.py {reference:.3f} ms "
          f"({loops / reference:.0f}x faster), kernels.py {fast:.3f} ms ({loops / fast:.0f}x)")


if __name__ == "__main__":
    main()
