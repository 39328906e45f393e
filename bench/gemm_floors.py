"""
The matrix-product floor of the rows of compare_torch.py that stay above PyTorch's time:
for each, the time of the bare products the kernel makes (the same shapes, orientations
and calls, nothing else), the kernel's whole forward + backward, and, with PyTorch
installed, PyTorch's whole forward + backward and its time for the same products (its
BLAS). Whatever the kernel takes above its products is the overhead left to remove; when
the products alone take longer than PyTorch's whole row, the row is bound by NumPy's BLAS.

    python bench/gemm_floors.py [--threads 1] [--repeats 7] [--default-malloc]

with compare_torch.py --malloc-tuning's allocator settings unless --default-malloc.

Rows: conv N64 16x14x14 F32 k3 (kernels.conv2d_*, forward + dx, dw, db) and the LSTM
T16 N64 D256 H512 (kernels.lstm_*; the captioning step adds ~40 ms of embedding, vocabulary
projection and loss to it). Medians of --repeats runs, milliseconds, float32.
"""
import argparse
import os
import sys
import time

THREADS = "1"
for index, item in enumerate(sys.argv):   # before NumPy is imported
    if item == "--threads" and index + 1 < len(sys.argv):
        THREADS = sys.argv[index + 1]
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = THREADS
# compare_torch.py --malloc-tuning's allocator settings, which glibc reads at start-up:
# run again with them unless they are set (see compare_torch.py's docstring)
MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
if "--default-malloc" not in sys.argv and any(os.environ.get(k) != v for k, v in MALLOC_TUNING.items()):
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **MALLOC_TUNING})

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kernels  # noqa: E402


def median_ms(run, repeats):
    run()   # warm up: allocations, caches, BLAS buffers
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def conv_case(rng):
    """conv N64 16x14x14 F32 k3: the kernel, and the products it makes (kernels._conv_*:
    rows computed 14 wide for 12 outputs, so each product covers 12 x 14 = 168 pixels)."""
    N, C, H, W, F, k = 64, 16, 14, 14, 32, 3
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w = rng.standard_normal((F, C, k, k), dtype=np.float32)
    b = rng.standard_normal(F, dtype=np.float32)
    dout = rng.standard_normal((N, F, H - k + 1, W - k + 1), dtype=np.float32)

    def whole():
        out, cache = kernels.conv2d_forward(x, w, b)
        kernels.conv2d_backward(dout, cache)

    K, P = C * k * k, (H - k + 1) * W
    weight_rows = rng.standard_normal((F, K + 1), dtype=np.float32)
    columns = rng.standard_normal((N, K + 1, P), dtype=np.float32)
    dout_rows = rng.standard_normal((N, F, P), dtype=np.float32)
    out = np.empty((N, F, P), np.float32)
    dcolumns = np.empty((N, K, P), np.float32)
    products = {
        "forward  W (F, K+1) @ columns[n] (K+1, P)": lambda: np.matmul(weight_rows, columns, out=out),
        "dW       columns[n] @ dY[n].T, summed": lambda: (columns @ dout_rows.transpose(0, 2, 1)).sum(0),
        "dX       W.T (K, F) @ dY[n] (F, P)": lambda: np.matmul(weight_rows[:, :K].T, dout_rows,
                                                                 out=dcolumns),
    }
    return whole, products, ("conv", (N, C, H, W, F, k))


def lstm_case(rng):
    """LSTM T16 N64 D256 H512: the kernel, and the products kernels.lstm_* make."""
    T, N, D, H = 16, 64, 256, 512
    x = rng.standard_normal((T, N, D), dtype=np.float32)
    h0 = rng.standard_normal((N, H), dtype=np.float32)
    Wx = rng.standard_normal((D, 4 * H), dtype=np.float32) / D ** 0.5
    Wh = rng.standard_normal((H, 4 * H), dtype=np.float32) / H ** 0.5
    b = rng.standard_normal(4 * H, dtype=np.float32)
    dh = rng.standard_normal((T, N, H), dtype=np.float32)

    def whole():
        h, cache = kernels.lstm_forward(x, h0, Wx, Wh, b)
        kernels.lstm_backward(dh, cache)

    da = rng.standard_normal((T, N, 4 * H), dtype=np.float32)
    a, product = np.empty((N, 4 * H), np.float32), np.empty((N, 4 * H), np.float32)
    dh_rows = np.empty((H, N), np.float32)
    x_rows, da_rows = x.reshape(T * N, D), da.reshape(T * N, 4 * H)
    h_rows = rng.standard_normal((T * N, H), dtype=np.float32)   # h0, h[0..T-2]

    def recurrent_forward():
        for t in range(T):
            np.add(a, np.matmul(h0, Wh, out=product), out=a)

    def recurrent_backward():
        for t in range(T):
            np.matmul(Wh, da[t].T, out=dh_rows)

    products = {
        "input projection x (TN, D) @ Wx": lambda: x_rows @ Wx,
        f"recurrent forward, {T} x a += h (N, H) @ Wh": recurrent_forward,
        f"recurrent backward, {T} x Wh @ da[t].T": recurrent_backward,
        "dx  da (TN, 4H) @ Wx.T": lambda: da_rows @ Wx.T,
        "dWx x.T @ da": lambda: x_rows.T @ da_rows,
        "dWh h.T @ da": lambda: h_rows.T @ da_rows,
    }
    return whole, products, ("lstm", (T, N, D, H))


def torch_times(kind, shape, products, repeats):
    """PyTorch's whole forward + backward of the row, and its time for the same products."""
    try:
        import torch
    except ImportError:
        return None, None
    torch.set_num_threads(int(THREADS))
    g = torch.Generator().manual_seed(0)

    def randn(*size):
        return torch.randn(*size, generator=g)
    if kind == "conv":
        N, C, H, W, F, k = shape
        x, w, b = (randn(*s).requires_grad_() for s in ((N, C, H, W), (F, C, k, k), (F,)))
        dout = randn(N, F, H - k + 1, W - k + 1)

        def whole():
            x.grad = w.grad = b.grad = None
            torch.nn.functional.conv2d(x, w, b).backward(dout)
        K, P = C * k * k, (H - k + 1) * W
        mats = [(randn(F, K + 1), randn(N, K + 1, P)), (randn(N, K + 1, P), randn(N, P, F)),
                (randn(K, F), randn(N, F, P))]
    else:
        T, N, D, H = shape
        lstm = torch.nn.LSTM(D, H)
        x, dh = randn(T, N, D), randn(T, N, H)
        h0, c0 = randn(1, N, H), torch.zeros(1, N, H)

        def whole():
            lstm.zero_grad(set_to_none=True)
            lstm(x, (h0, c0))[0].backward(dh)
        mats = [(randn(T * N, D), randn(D, 4 * H)), (randn(N, H), randn(H, 4 * H)),
                (randn(H, 4 * H), randn(4 * H, N)), (randn(T * N, 4 * H), randn(4 * H, D)),
                (randn(D, T * N), randn(T * N, 4 * H)), (randn(H, T * N), randn(T * N, 4 * H))]
    counts = [1] * len(mats)
    if kind == "lstm":
        counts[1] = counts[2] = shape[0]   # the recurrent products, once per step

    def all_products():
        for (left, right), count in zip(mats, counts):
            for _ in range(count):
                torch.matmul(left, right)
    with torch.no_grad():
        product_ms = median_ms(all_products, repeats)
    return median_ms(whole, repeats), product_ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--threads", default="1", help="BLAS threads (default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's default allocator settings (slower: page faults)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"threads {args.threads}, float32, medians of {args.repeats} runs, ms, "
          f"malloc tuning {'off' if args.default_malloc else 'on'}")
    for name, case in (("conv N64 16x14x14 F32 k3", conv_case),
                       ("lstm T16 N64 D256 H512", lstm_case)):
        whole, products, (kind, shape) = case(rng)
        print(f"\n{name}")
        total = 0.0
        for label, run in products.items():
            ms = median_ms(run, args.repeats)
            total += ms
            print(f"  {label:45s} {ms:8.2f}")
        ours = median_ms(whole, args.repeats)
        print(f"  {'bare products, sum':45s} {total:8.2f}")
        print(f"  {'handgrad forward + backward':45s} {ours:8.2f}   "
              f"(products {100 * total / ours:.0f}%, other work {ours - total:.2f})")
        torch_whole, torch_products = torch_times(kind, shape, products, args.repeats)
        if torch_whole is None:
            print("  (PyTorch not installed: pip install torch==2.13.0 for its column)")
        else:
            print(f"  {'PyTorch forward + backward':45s} {torch_whole:8.2f}   "
                  f"(ratio {ours / torch_whole:.2f}; the bare products alone "
                  f"{total / torch_whole:.2f})")
            print(f"  {'PyTorch, the same products (its BLAS)':45s} {torch_products:8.2f}")


if __name__ == "__main__":
    main()
