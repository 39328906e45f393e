"""optim.py's update rules vs torch.optim, step for step, in float64.

    python bench/optim_vs_torch.py [--steps 50]

Each rule trains the same random problem from the same start for --steps steps at a
constant learning rate: a least-squares fit, loss = 0.5 * |A w - b|^2 / n with w of shape
(8, 5), so the gradient A^T (A w - b) / n changes with the weights and every step depends
on the optimizer's state. handgrad's rule gets the gradient computed from its own weights,
torch's optimizer the one autograd computes from torch's weights, so small differences
would grow over the steps instead of hiding. Printed per rule: the largest absolute
difference between the two weight arrays over all steps, and the largest weight.

    optim.sgd                vs torch.optim.SGD(lr)
    optim.sgd_momentum       vs torch.optim.SGD(lr, momentum)   (equal at a constant lr)
    optim.nesterov_momentum  vs torch.optim.SGD(lr, momentum, nesterov=True)
    optim.adam               vs torch.optim.Adam(lr, betas, eps)
    optim.adamw              vs torch.optim.AdamW(lr, betas, eps, weight_decay)

PyTorch is an optional, benchmark-only dependency (the tests never import it):

    pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

Without it the script says so and exits with status 0.
"""
import argparse
import importlib.util
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import optim  # noqa: E402

LR_SGD, MOMENTUM = 0.1, 0.9
LR_ADAM, BETAS, EPS, WEIGHT_DECAY = 1e-2, (0.9, 0.999), 1e-8, 0.05


def problem(seed=0, n=20, d=8, k=5):
    """A random least-squares problem and a random start."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, k)), rng.standard_normal((d, k))


def gradient(A, b, w):
    """Gradient of 0.5 * |A w - b|^2 / n."""
    return A.T @ (A @ w - b) / len(A)


def compare(rule, config, make_torch_optimizer, steps, A, b, w0):
    """Largest |w_handgrad - w_torch| over the steps, and the largest |w| seen."""
    import torch
    w = w0.copy()
    w_torch = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    A_t, b_t = torch.tensor(A), torch.tensor(b)
    opt = make_torch_optimizer([w_torch])
    worst, largest = 0.0, 0.0
    for _ in range(steps):
        w, config = rule(w, gradient(A, b, w), config)
        opt.zero_grad()
        loss = 0.5 * ((A_t @ w_torch - b_t) ** 2).sum() / len(A)
        loss.backward()
        opt.step()
        theirs = w_torch.detach().numpy()
        worst = max(worst, float(np.max(np.abs(w - theirs))))
        largest = max(largest, float(np.max(np.abs(w))))
    return worst, largest


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="update steps per rule")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    if importlib.util.find_spec("torch") is None:
        print("PyTorch is not installed, so there is nothing to compare with. It is an "
              "optional,\nbenchmark-only dependency; install the CPU build with\n\n"
              "    pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
              "\n\nand run this again.")
        return 0
    import torch
    torch.set_num_threads(1)
    A, b, w0 = problem()
    SGD, Adam, AdamW = torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW
    adam_config = {'learning_rate': LR_ADAM, 'beta1': BETAS[0], 'beta2': BETAS[1],
                   'epsilon': EPS}
    cases = [
        ("sgd", optim.sgd, {'learning_rate': LR_SGD},
         "SGD(lr=0.1)", lambda p: SGD(p, lr=LR_SGD)),
        ("sgd_momentum", optim.sgd_momentum, {'learning_rate': LR_SGD, 'momentum': MOMENTUM},
         "SGD(lr=0.1, momentum=0.9)", lambda p: SGD(p, lr=LR_SGD, momentum=MOMENTUM)),
        ("nesterov_momentum", optim.nesterov_momentum,
         {'learning_rate': LR_SGD, 'momentum': MOMENTUM},
         "SGD(lr=0.1, momentum=0.9, nesterov=True)",
         lambda p: SGD(p, lr=LR_SGD, momentum=MOMENTUM, nesterov=True)),
        ("adam", optim.adam, dict(adam_config),
         "Adam(lr=0.01)", lambda p: Adam(p, lr=LR_ADAM, betas=BETAS, eps=EPS)),
        ("adamw", optim.adamw, dict(adam_config, weight_decay=WEIGHT_DECAY),
         "AdamW(lr=0.01, weight_decay=0.05)",
         lambda p: AdamW(p, lr=LR_ADAM, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)),
    ]
    print(f"{args.steps} steps in float64 on a random least-squares problem, w of shape "
          f"{w0.shape}; PyTorch {torch.__version__}, NumPy {np.__version__}\n")
    print(f"{'optim':<24}{'torch.optim':<44}{'max |difference|':>16}{'max |w|':>9}")
    for name, rule, config, torch_name, make in cases:
        worst, largest = compare(rule, config, make, args.steps, A, b, w0)
        print(f"{name:<24}{torch_name:<44}{worst:>16.1e}{largest:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
