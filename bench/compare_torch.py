"""handgrad vs PyTorch (CPU): the same layers, shapes and training epochs, timed side by side.

    python bench/compare_torch.py [--repeats 5] [--images 60000]
                                  [--only conv cnn mlp lstm norm attention]
                                  [--threads N] [--malloc-tuning] [--cpu-time] [--rss]

PyTorch is an optional, benchmark-only dependency (the tests never import it). Install
the CPU build with

    pip install torch==2.13.0

Without it the script says so and exits with status 0.

Rows (float32, forward + backward, milliseconds):
- conv: kernels.conv2d_forward + conv2d_backward (dx, dw, db), the fast kernels the models
  train with, vs F.conv2d + autograd (dx, dw, db), on the four shapes of bench_layers.py;
  "conv reference" rows time layers.py's versions (the formulas as written) the same way.
- pool: kernels.max_pool_forward (keep_choices=True, as in training) + max_pool_backward
  vs F.max_pool2d + autograd, N64 16x28x28 2x2 stride 2; "pool reference" times layers.py's.
- cnn epoch: one epoch of synthetic 1x28x28 images (60,000 by default), batch 64, plain
  SGD (lr 0.01), of conv16 3x3 pad 1 - relu - max pool 2x2 - fc100 - relu - fc10 -
  softmax loss: sequential.Sequential + optim.sgd vs nn.Sequential + torch.optim.SGD, each
  written in that natural order and run in it. Neither computes the data's dX.
  "cnn epoch, pool before relu" is the same network with Sequential's explicit
  pool_before_relu=True (the ReLU runs on the 4x smaller pooled array; the same numbers).
- mlp epoch: softmax.SoftmaxClassifier 784 - 100 - 10 vs nn.Sequential, same epoch.
- lstm: kernels.lstm_forward + lstm_backward (what CaptioningRNN trains with), T=16, N=64,
  D=256, H=512, vs a PyTorch step loop written the same way (one input-projection matmul,
  then h @ Wh per step; autograd does the backward) and vs nn.LSTM; "reference" times
  rnn_layers.py's version vs nn.LSTM.
- captioning step: word embedding (V=1000), kernels' LSTM, temporal affine to V scores, masked
  temporal softmax loss and all gradients; PyTorch with nn.Embedding, nn.LSTM, nn.Linear
  and cross-entropy.
- batchnorm N64 D1024: kernels.batchnorm_forward (train mode) + batchnorm_backward (what
  Sequential's BatchNorm trains with) vs F.batch_norm(training=True) + autograd (dx,
  dgamma, dbeta); "reference" times layers.batchnorm_forward + batchnorm_backward_alt
  (the closed form), "reference, graph backward" the same with batchnorm_backward (the
  step-by-step version), against the same PyTorch.
- layernorm N64 D1024: kernels.layernorm_* (what LayerNorm and the Transformer train
  with) vs F.layer_norm; "reference" times layers.layernorm_*.
- spatial batchnorm N64 C32 28x28: kernels.spatial_batchnorm_* (what the models train
  with) vs F.batch_norm; "reference" times layers.py's version; spatial groupnorm (G=8):
  kernels.spatial_groupnorm_* (what GroupNorm trains with) vs F.group_norm; "reference"
  times layers.spatial_groupnorm_*.
- multi-head attention N32 T=S=64 E256, 8 heads, self-attention: attention_layers'
  forward + backward (dx = dquery + dkey + dvalue and the 8 parameter gradients) vs
  nn.MultiheadAttention(batch_first=True) + autograd.
- transformer captioning step: CaptioningTransformer.loss (N=100 captions of T=13 words,
  V=35, an 8x8 grid of 64-d features, E=128, 4 heads, 2 layers, FFN 512, dropout keep 0.9:
  the MNIST-scenes setting of image_captioning.py) vs PyTorch's nn.TransformerDecoder with
  the same sizes (post-norm, ReLU, dropout 0.1), embedding, sinusoidal positions, memory
  projection, vocabulary affine and cross-entropy, all gradients.

How it measures. Each side runs in its own worker process: PyTorch's OpenMP threads keep
spinning for a while after each operation and would slow NumPy code timed in the same
process. The main process asks the two workers in turn, alternating which goes first,
so both see the same machine load; every row gets fresh workers (glibc's allocator
adapts to what a process has freed before, see Memory). A row's times are the medians of all
timed runs (--repeats turns per side, each turn several runs for the short rows,
after one untimed warm-up run). Its ratio is handgrad / PyTorch (below 1: handgrad is
faster), computed per turn from the two sides' back-to-back runs and reported as the
median over turns, with the lowest and highest turn in brackets: on a virtual machine
whose speed drifts (seen here: the same epoch 1.8x slower an hour later, on both sides)
a turn compares the two sides under the same conditions, where medians over the whole
row need not. Both sides get --threads threads
(OpenBLAS for NumPy, OpenMP for PyTorch; default: the number of cores). The load average
is printed before and after: on a busy machine multi-threaded BLAS stalls (a thread
waits for its descheduled partner), so use --threads 1 there, and compare ratios, not
absolute times. --cpu-time adds each side's CPU time, a check on wall-clock numbers
taken with one thread on a busy machine (with more threads it counts spinning threads).

Memory. glibc's malloc gives large freed blocks back to the kernel (blocks above its
mmap threshold, and heap tops above its trim threshold), so the next array of that size
starts on fresh pages and pays a page fault per 4 KiB on first touch: for repeated
layer calls often more than the arithmetic. Both thresholds rise by themselves after the
process frees one block of up to 32 MiB (e.g. the scores of a larger evaluation batch),
or can be raised for a whole process by its environment:

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 python train.py

That is a process-wide setting, so handgrad never changes it on import; --malloc-tuning
sets it for both workers. --rss adds each row's memory, in MiB: the peak resident size of
each side's worker while it builds and runs the row (its data included), above what the
worker held before (the interpreter and the libraries, each side's imported up front),
then the ratio; and it runs one
CNN epoch per side in a fresh process and prints its resident memory before the epoch and
its peak during it (Linux).

The OpenBLAS kernel matters too: where OPENBLAS_CORETYPE forces an older kernel (shown in
the first line when threadpoolctl is installed), NumPy's matrix products run on that one.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

CONV_SHAPES = [  # N, C, H, W, F, k, pad (as bench_layers.py)
    (64, 1, 28, 28, 16, 3, 1),
    (64, 16, 14, 14, 32, 3, 0),
    (64, 1, 28, 28, 32, 5, 0),
    (64, 3, 32, 32, 32, 3, 1),
]
LSTM_SIZES = dict(T=16, N=64, D=256, H=512, V=1000)
BATCH = 64
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def conv_name(N, C, H, W, F, k, pad):
    return f"conv N{N} {C}x{H}x{W} F{F} k{k}" + (f" pad{pad}" if pad else "")


def cases(args):
    """(name, kind, parameters, runs per turn) of every row, in print order."""
    rows = []
    if "conv" in args.only:
        rows += [(conv_name(*shape), "conv", shape, 10) for shape in CONV_SHAPES]
        rows += [(conv_name(*shape) + " reference", "conv_reference", shape, 3)
                 for shape in CONV_SHAPES]
        rows.append((f"max pool N{BATCH} 16x28x28 2x2/2", "pool", None, 10))
        rows.append((f"max pool N{BATCH} 16x28x28 2x2/2 reference", "pool_reference", None, 3))
    if "cnn" in args.only:
        rows.append((f"cnn epoch ({args.images // 1000}k images, batch {BATCH})", "cnn",
                     args.images, 1))
        rows.append(("cnn epoch, pool before relu", "cnn_pool_first", args.images, 1))
    if "mlp" in args.only:
        rows.append((f"mlp epoch ({args.images // 1000}k images, batch {BATCH})", "mlp",
                     args.images, 3))
    if "lstm" in args.only:
        s = LSTM_SIZES
        shape = f"T{s['T']} N{s['N']} D{s['D']} H{s['H']}"
        rows.append((f"lstm {shape} vs step loop", "lstm_loop", None, 5))
        rows.append((f"lstm {shape} vs nn.LSTM", "lstm_module", None, 5))
        rows.append((f"lstm {shape} vs nn.LSTM, reference", "lstm_reference", None, 5))
        rows.append((f"captioning step {shape} V{s['V']}", "caption", None, 5))
    if "norm" in args.only:
        rows.append(("batchnorm N64 D1024", "batchnorm", None, 20))
        rows.append(("batchnorm N64 D1024 reference", "batchnorm_reference", None, 20))
        rows.append(("batchnorm N64 D1024 reference, graph backward", "batchnorm_graph", None, 20))
        rows.append(("layernorm N64 D1024", "layernorm", None, 20))
        rows.append(("layernorm N64 D1024 reference", "layernorm_reference", None, 20))
        rows.append(("spatial batchnorm N64 C32 28x28", "spatial_batchnorm", None, 10))
        rows.append(("spatial batchnorm N64 C32 28x28 reference", "spatial_batchnorm_reference",
                     None, 5))
        rows.append(("spatial groupnorm N64 C32 28x28 G8", "groupnorm", None, 10))
        rows.append(("spatial groupnorm N64 C32 28x28 G8 reference", "groupnorm_reference",
                     None, 3))
    if "attention" in args.only:
        rows.append(("multi-head attention N32 T=S=64 E256 h8", "mha", None, 5))
        rows.append(("transformer captioning step N100 T13 E128", "transformer", None, 3))
    return rows


def data(images):
    """The same synthetic data for both sides: images (n, 1, 28, 28) and labels."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((images, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, images)
    return X, y


TRANSFORMER_VOCAB = {"<NULL>": 0, "<START>": 1, "<END>": 2,
                     **{f"w{i}": i for i in range(3, 35)}}


def transformer_data():
    """Captions (100, 14) of 35 words and features (100, 64, 64), for both sides."""
    rng = np.random.default_rng(2)
    words = rng.integers(3, 35, (100, 14))
    words[:, 0] = 1
    features = rng.standard_normal((100, 64, 64), dtype=np.float32)
    return words, features, rng


# ============================================================================= handgrad side

def handgrad_case(kind, parameter):
    """A function running one timed unit of the row on handgrad's side."""
    import kernels
    import layers
    import optim
    import rnn_layers
    from sequential import Affine, Conv, MaxPool, ReLU, Sequential
    from softmax import SoftmaxClassifier
    rng = np.random.default_rng(1)

    def randn(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    if kind in ("conv", "conv_reference"):
        module = kernels if kind == "conv" else layers
        N, C, H, W, F, k, pad = parameter
        x, w, b = randn(N, C, H, W), randn(F, C, k, k), randn(F)
        dout = randn(N, F, H + 2 * pad - k + 1, W + 2 * pad - k + 1)

        def run():
            out, cache = module.conv2d_forward(x, w, b, 1, pad)
            module.conv2d_backward(dout, cache)
        return run

    if kind in ("pool", "pool_reference"):
        x, dout = np.maximum(randn(BATCH, 16, 28, 28), 0), randn(BATCH, 16, 14, 14)
        pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}

        def run():
            if kind == "pool":
                out, cache = kernels.max_pool_forward(x, pool_param, keep_choices=True)
                kernels.max_pool_backward(dout, cache)
            else:
                out, cache = layers.max_pool_forward(x, pool_param)
                layers.max_pool_backward(dout, cache)
        return run

    if kind in ("cnn", "cnn_pool_first", "mlp"):
        X, y = data(parameter)
        if kind != "mlp":
            model = Sequential((1, 28, 28), [Conv(16, 3, pad=1), ReLU(), MaxPool(2),
                                             Affine(100), ReLU(), Affine(10)], seed=0,
                               pool_before_relu=kind == "cnn_pool_first")
        else:
            model = SoftmaxClassifier(784, 100, 10, weight_scale=None, dtype=np.float32, seed=0)
        configs = {name: {"learning_rate": 0.01} for name in model.params}

        def run():
            for start in range(0, len(X), BATCH):
                loss, grads = model.loss(X[start:start + BATCH], y[start:start + BATCH])
                for name, grad in grads.items():
                    model.params[name], configs[name] = optim.sgd(model.params[name], grad,
                                                                  configs[name])
        return run

    if kind in ("batchnorm", "batchnorm_reference", "batchnorm_graph", "layernorm",
                "layernorm_reference"):
        x, gamma, beta, dout = randn(64, 1024), randn(1024), randn(1024), randn(64, 1024)
        forward, backward = {
            "batchnorm": (kernels.batchnorm_forward, kernels.batchnorm_backward),
            "batchnorm_reference": (layers.batchnorm_forward, layers.batchnorm_backward_alt),
            "batchnorm_graph": (layers.batchnorm_forward, layers.batchnorm_backward),
            "layernorm": (kernels.layernorm_forward, kernels.layernorm_backward),
            "layernorm_reference": (layers.layernorm_forward, layers.layernorm_backward)}[kind]
        param = {"mode": "train"} if kind.startswith("batchnorm") else {}

        def run():
            backward(dout, forward(x, gamma, beta, dict(param))[1])
        return run

    if kind in ("spatial_batchnorm", "spatial_batchnorm_reference", "groupnorm",
                "groupnorm_reference"):
        x, dout = randn(64, 32, 28, 28), randn(64, 32, 28, 28)
        module = kernels if kind in ("spatial_batchnorm", "groupnorm") else layers
        gamma, beta = randn(32), randn(32)

        def run():
            if kind.startswith("groupnorm"):
                out, cache = module.spatial_groupnorm_forward(x, gamma.reshape(1, 32, 1, 1),
                                                              beta.reshape(1, 32, 1, 1), 8, {})
                module.spatial_groupnorm_backward(dout, cache)
            else:
                out, cache = module.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
                module.spatial_batchnorm_backward(dout, cache)
        return run

    if kind == "mha":
        import attention_layers
        E = 256
        x, dout = randn(32, 64, E), randn(32, 64, E)
        params = {name: randn(E, E) / E ** 0.5 if name.startswith("W") else randn(E)
                  for name in attention_layers.PARAM_NAMES}

        def run():
            out, cache = attention_layers.multi_head_attention_forward(x, x, x, params, 8)
            dquery, dkey, dvalue, grads = attention_layers.multi_head_attention_backward(dout, cache)
            dquery + dkey + dvalue
        return run

    if kind == "transformer":
        from transformer import CaptioningTransformer
        words, features, _ = transformer_data()
        model = CaptioningTransformer(TRANSFORMER_VOCAB, input_dim=64, wordvec_dim=128,
                                      num_heads=4, num_layers=2, max_length=16, keep_prob=0.9,
                                      seed=0)

        def run():
            model.loss(features, words)
        return run

    T, N, D, H, V = (LSTM_SIZES[key] for key in "TNDHV")
    Wx, Wh, b = randn(D, 4 * H) / D ** 0.5, randn(H, 4 * H) / H ** 0.5, randn(4 * H)
    if kind in ("lstm_loop", "lstm_module", "lstm_reference"):
        x, h0, dh = randn(T, N, D), randn(N, H), randn(T, N, H)
        module = rnn_layers if kind == "lstm_reference" else kernels

        def run():
            h, cache = module.lstm_forward(x, h0, Wx, Wh, b)
            module.lstm_backward(dh, cache)
        return run

    # captioning step
    words = rng.integers(0, V, (N, T + 1))
    W_embed, h0 = randn(V, D) / 100, randn(N, H)
    W_vocab, b_vocab = randn(H, V) / H ** 0.5, np.zeros(V, np.float32)

    def run():
        embedded, embed_cache = rnn_layers.word_embedding_forward(words[:, :-1], W_embed)
        h, lstm_cache = kernels.lstm_forward(embedded.transpose(1, 0, 2), h0, Wx, Wh, b)
        scores, fc_cache = rnn_layers.temporal_fc_forward(h.transpose(1, 0, 2), W_vocab, b_vocab)
        loss, dscores = rnn_layers.temporal_softmax_loss(scores, words[:, 1:],
                                                          np.ones((N, T), bool))
        dh, dW_vocab, db_vocab = rnn_layers.temporal_fc_backward(dscores, fc_cache)
        dx, dh0, dWx, dWh, db = kernels.lstm_backward(dh.transpose(1, 0, 2), lstm_cache)
        rnn_layers.word_embedding_backward(dx.transpose(1, 0, 2), embed_cache)
    return run


# ============================================================================= PyTorch side

def torch_case(kind, parameter):
    import torch
    import torch.nn.functional as F
    from torch import nn
    torch.manual_seed(0)
    rng = np.random.default_rng(1)

    def randn(*shape, grad=False):
        return torch.from_numpy(rng.standard_normal(shape, dtype=np.float32)).requires_grad_(grad)

    if kind in ("pool", "pool_reference"):
        x = torch.relu(randn(BATCH, 16, 28, 28)).requires_grad_(True)
        dout = randn(BATCH, 16, 14, 14)

        def run():
            x.grad = None
            F.max_pool2d(x, 2).backward(dout)
        return run

    if kind in ("conv", "conv_reference"):
        N, C, H, W, F_, k, pad = parameter
        x, w, b = randn(N, C, H, W, grad=True), randn(F_, C, k, k, grad=True), randn(F_, grad=True)
        dout = randn(N, F_, H + 2 * pad - k + 1, W + 2 * pad - k + 1)

        def run():
            x.grad = w.grad = b.grad = None
            F.conv2d(x, w, b, padding=pad).backward(dout)
        return run

    if kind in ("cnn", "cnn_pool_first", "mlp"):
        X, y = data(parameter)
        X, y = torch.from_numpy(X), torch.from_numpy(y)
        if kind != "mlp":
            model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(16 * 14 * 14, 100), nn.ReLU(),
                                  nn.Linear(100, 10))
        else:
            model = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

        def run():
            for start in range(0, len(X), BATCH):
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(X[start:start + BATCH]), y[start:start + BATCH])
                loss.backward()
                optimizer.step()
        return run

    if kind in ("batchnorm", "batchnorm_reference", "batchnorm_graph", "layernorm",
                "layernorm_reference"):
        x, gamma, beta, dout = randn(64, 1024, grad=True), randn(1024, grad=True), \
            randn(1024, grad=True), randn(64, 1024)

        def run():
            x.grad = gamma.grad = beta.grad = None
            if kind.startswith("layernorm"):
                F.layer_norm(x, (1024,), gamma, beta).backward(dout)
            else:
                F.batch_norm(x, None, None, gamma, beta, training=True).backward(dout)
        return run

    if kind in ("spatial_batchnorm", "spatial_batchnorm_reference", "groupnorm",
                "groupnorm_reference"):
        x, dout = randn(64, 32, 28, 28, grad=True), randn(64, 32, 28, 28)
        gamma, beta = randn(32, grad=True), randn(32, grad=True)

        def run():
            x.grad = gamma.grad = beta.grad = None
            if kind.startswith("groupnorm"):
                F.group_norm(x, 8, gamma, beta).backward(dout)
            else:
                F.batch_norm(x, None, None, gamma, beta, training=True).backward(dout)
        return run

    if kind == "mha":
        E = 256
        attention = nn.MultiheadAttention(E, 8, batch_first=True)
        x, dout = randn(32, 64, E, grad=True), randn(32, 64, E)

        def run():
            x.grad = None
            attention.zero_grad(set_to_none=True)
            attention(x, x, x, need_weights=False)[0].backward(dout)
        return run

    if kind == "transformer":
        words, features, _ = transformer_data()
        words, features = torch.from_numpy(words), torch.from_numpy(features)
        E, V, T = 128, 35, 13
        layer = nn.TransformerDecoderLayer(E, 4, dim_feedforward=512, dropout=0.1,
                                           batch_first=True)
        decoder = nn.TransformerDecoder(layer, 2)
        embed, project, vocab = nn.Embedding(V, E), nn.Linear(64, E), nn.Linear(E, V)
        position = torch.arange(T)[:, None] / 10000 ** (torch.arange(0, E, 2) / E)
        encoding = torch.stack([torch.sin(position), torch.cos(position)], -1).reshape(T, E)
        causal = nn.Transformer.generate_square_subsequent_mask(T)
        modules = (decoder, embed, project, vocab)
        dropout = nn.Dropout(0.1)

        def run():
            for module in modules:
                module.zero_grad(set_to_none=True)
            x = dropout(embed(words[:, :-1]) + encoding)
            out = decoder(x, project(features), tgt_mask=causal, tgt_is_causal=True)
            loss = F.cross_entropy(vocab(out).reshape(-1, V), words[:, 1:].reshape(-1),
                                   reduction="sum") / len(words)
            loss.backward()
        return run

    T, N, D, H, V = (LSTM_SIZES[key] for key in "TNDHV")
    if kind == "lstm_loop":
        x, h0, dh = randn(T, N, D), randn(N, H), randn(T, N, H)
        Wx = (randn(D, 4 * H) / D ** 0.5).requires_grad_()
        Wh = (randn(H, 4 * H) / H ** 0.5).requires_grad_()
        b = randn(4 * H, grad=True)

        def run():
            Wx.grad = Wh.grad = b.grad = None
            projected = (x.reshape(T * N, D) @ Wx + b).reshape(T, N, 4 * H)
            h, c, hs = h0, torch.zeros_like(h0), []
            for t in range(T):
                a = projected[t] + h @ Wh
                ifo, g = torch.sigmoid(a[:, :3 * H]), torch.tanh(a[:, 3 * H:])
                c = ifo[:, H:2 * H] * c + ifo[:, :H] * g
                h = ifo[:, 2 * H:] * torch.tanh(c)
                hs.append(h)
            torch.stack(hs).backward(dh)
        return run

    lstm = nn.LSTM(D, H)
    h0, c0 = randn(1, N, H), torch.zeros(1, N, H)
    if kind in ("lstm_module", "lstm_reference"):
        x, dh = randn(T, N, D), randn(T, N, H)

        def run():
            lstm.zero_grad(set_to_none=True)
            lstm(x, (h0, c0))[0].backward(dh)
        return run

    words = torch.from_numpy(rng.integers(0, V, (N, T + 1)))
    embed, vocab = nn.Embedding(V, D), nn.Linear(H, V)

    def run():
        for module in (embed, lstm, vocab):
            module.zero_grad(set_to_none=True)
        h = lstm(embed(words[:, :-1]).transpose(0, 1), (h0, c0))[0]
        scores = vocab(h.transpose(0, 1))
        # sum over time, mean over the batch, as temporal_softmax_loss
        loss = F.cross_entropy(scores.reshape(N * T, V), words[:, 1:].reshape(N * T),
                               reduction="sum") / N
        loss.backward()
    return run


# ============================================================================= workers

def memory_mib(field):
    """A line of /proc/self/status in MiB: VmRSS (resident now), VmHWM (peak)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024


def reset_peak_memory():
    """Reset VmHWM, the peak resident size, to the current resident size (Linux only)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def epoch_memory(run):
    """Resident memory before one call of run() and its peak during it (Linux only)."""
    before = memory_mib("VmRSS")
    reset_peak_memory()
    run()
    return {"before": before, "peak": memory_mib("VmHWM")}


def worker(side, threads):
    """Serve timing requests on stdin: one JSON line {"kind", "parameter", "runs"} in, one
    JSON line {"times": [...]} out. The first request of a row also builds it and warms
    it up (untimed)."""
    if side == "torch":
        import torch
        torch.set_num_threads(threads)
    else:   # handgrad's modules (and SciPy's BLAS, which kernels uses) before any row, as
        # torch above, so that no row's memory counts a library import
        import attention_layers, kernels, layers, optim, rnn_layers, sequential, softmax  # noqa: E401, F401
        import transformer  # noqa: F401
    make = handgrad_case if side == "handgrad" else torch_case
    built = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("rss"):
            print(json.dumps(epoch_memory(make("cnn", request["parameter"]))), flush=True)
            continue
        key = json.dumps([request["kind"], request["parameter"]])
        if key not in built:
            # a fresh worker serves one row: what it holds before building the row is the
            # interpreter and the libraries; the row's memory is its peak above that
            resident_before_row = memory_mib("VmRSS")
            reset_peak_memory()
            built[key] = make(request["kind"], request["parameter"])
            built[key]()
        run, times, cpu_times = built[key], [], []
        for _ in range(request["runs"]):
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        print(json.dumps({"times": times, "cpu": cpu_times,
                          "row_mib": memory_mib("VmHWM") - resident_before_row}), flush=True)


class Worker:
    def __init__(self, side, threads, malloc_tuning):
        env = dict(os.environ)
        # the same thread count for OpenBLAS (NumPy) and OpenMP (PyTorch)
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        if malloc_tuning:
            env.update(TUNED_MALLOC)
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", side,
             "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, **request):
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("a benchmark worker died (see its error above)")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def blas_description():
    """NumPy's BLAS library and the kernel it runs (needs threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (pip install threadpoolctl to see it)"
    return ", ".join(f"{i['internal_api']} {i.get('architecture', '')}".strip()
                     for i in threadpool_info() if i["user_api"] == "blas")


def peak_rss(args):
    print(f"\nresident memory of one CNN epoch, {args.images} images (a fresh process per "
          f"side; the data alone is {args.images * 28 * 28 * 4 / 2**20:.0f} MiB):")
    for side in ("handgrad", "torch"):
        worker_process = Worker(side, args.threads, args.malloc_tuning)
        memory = worker_process.ask(rss=True, parameter=args.images)
        worker_process.close()
        print(f"  {side:<9} before the epoch {memory['before']:6.0f} MiB, peak during it "
              f"{memory['peak']:6.0f} MiB (+{memory['peak'] - memory['before']:.0f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5,
                        help="turns per side and row (at least 5 for the README table)")
    parser.add_argument("--images", type=int, default=60000, help="images per epoch")
    parser.add_argument("--only", nargs="+",
                        default=["conv", "cnn", "mlp", "lstm", "norm", "attention"],
                        choices=["conv", "cnn", "mlp", "lstm", "norm", "attention"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--malloc-tuning", action="store_true",
                        help="raise glibc's mmap and trim thresholds in both workers")
    parser.add_argument("--cpu-time", action="store_true",
                        help="also print the CPU time (all threads) of each side: a check on "
                             "wall-clock numbers taken on a busy machine")
    parser.add_argument("--rss", action="store_true",
                        help="also report each row's peak memory per side and the peak RSS "
                             "of one CNN epoch per side")
    parser.add_argument("--worker", choices=["handgrad", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.threads)

    if importlib.util.find_spec("torch") is None:
        print("PyTorch is not installed, so there is nothing to compare with. It is an "
              "optional,\nbenchmark-only dependency; install the CPU build with\n\n"
              "    pip install torch==2.13.0\n\nand run this again "
              "(python bench/bench_layers.py times handgrad alone).")
        return 0

    from importlib.metadata import version
    print(f"handgrad (NumPy {np.__version__}; BLAS: {blas_description()}) vs "
          f"PyTorch {version('torch')}; {args.threads} threads each; "
          f"malloc tuning {'on' if args.malloc_tuning else 'off'}")
    print("load average at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(f"\n{'row (float32, forward + backward)':<44} {'handgrad ms':>12} "
          f"{'torch ms':>10} {'ratio':>6} {'(turns)':>13}"
          + (f"   {'MiB':>3} {'handgrad':>7} {'torch':>7} {'ratio':>5}" if args.rss else ""))
    for name, kind, parameter, runs in cases(args):
        # fresh workers for every row: glibc adapts its thresholds to the largest block a
        # process has freed, so an earlier row would otherwise change this row's page faults
        workers = {side: Worker(side, args.threads, args.malloc_tuning)
                   for side in ("handgrad", "torch")}
        times = {"handgrad": [], "torch": []}
        cpu = {"handgrad": [], "torch": []}
        row_mib = {"handgrad": 0.0, "torch": 0.0}
        turn_ratios = []
        for turn in range(args.repeats):
            order = ("handgrad", "torch") if turn % 2 == 0 else ("torch", "handgrad")
            turn_times = {}
            for side in order:
                answer = workers[side].ask(kind=kind, parameter=parameter, runs=runs)
                times[side] += answer["times"]
                cpu[side] += answer["cpu"]
                row_mib[side] = max(row_mib[side], answer["row_mib"])
                turn_times[side] = float(np.median(answer["times"]))
            turn_ratios.append(turn_times["handgrad"] / turn_times["torch"])
        for worker_process in workers.values():
            worker_process.close()
        mine, theirs = (1000 * float(np.median(times[s])) for s in ("handgrad", "torch"))
        line = (f"{name:<44} {mine:12.2f} {theirs:10.2f} {np.median(turn_ratios):6.2f} "
                f"({min(turn_ratios):.2f}-{max(turn_ratios):.2f})")
        if args.cpu_time:
            mine_cpu, theirs_cpu = (1000 * float(np.median(cpu[s])) for s in ("handgrad", "torch"))
            line += f"   cpu ms {mine_cpu:9.2f} {theirs_cpu:9.2f} {mine_cpu / theirs_cpu:6.2f}"
        if args.rss:
            line += (f"   MiB {row_mib['handgrad']:7.1f} {row_mib['torch']:7.1f} "
                     f"{row_mib['handgrad'] / max(row_mib['torch'], 0.1):5.2f}")
        print(line, flush=True)
    print("load average at end:   " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    if args.rss:
        peak_rss(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
