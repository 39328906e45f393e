"""
Diagnostic probes: when a graded function fails, name the likely mistake.

Two kinds of evidence, both general properties rather than known cases:
- factors: the function is run on the same inputs with one factor changed (C = 1 or
  C > 1, N = 1, square or not, scores near +-1000, ...). A factor whose change turns
  right into wrong (or wrong into right) points at the part of the code that handles it.
- transforms: the wrong output is compared with simple transforms of the expected one
  (NaN or inf where it is finite, a constant factor such as N, flipped sign, swapped
  axes, the right values in another order, captions one step late).

`diagnose(function, probes)` turns the evidence into at most two hints, each a plain
sentence saying what was observed and the likely cause, then one line of evidence. A
cause is never stated as fact ("probably"), and no hint is given when no probe explains
the failure. Pure NumPy and the standard library: the handout's checker ships this file
and gives the same hints on its public checks.
"""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Probe:
    """One run of the function: its factors, whether it was right, and what it returned."""
    label: str
    factors: dict = field(default_factory=dict)   # factor name -> value (e.g. 'C = 1': True)
    ok: bool = True
    what: str = ''             # what was wrong: 'out', 'dx', 'loss', 'captions', ...
    got: object = None         # the function's value of `what` (None: raised or absent)
    expected: object = None    # the right value of `what`
    error: str = ''            # the exception's type, if it raised


# ----------------------------------------------------------------------- factors

def array_factors(args):
    """Factors of a case, read from its arguments' names and shapes."""
    factors = {}
    for name, value in args.items():
        shape = np.shape(value) if isinstance(value, np.ndarray) else None
        if name in ('x', 'X', 'features') and shape:
            factors['N = 1'] = shape[0] == 1
            if len(shape) == 4:
                factors['C = 1'] = shape[1] == 1
                factors['N = 1 or C = 1'] = shape[0] == 1 or shape[1] == 1
                factors['square input'] = shape[2] == shape[3]
            if len(shape) == 3 and name == 'x':
                factors['T = 1'] = shape[1] == 1
        if name == 'w' and shape and len(shape) == 4:
            factors['F = 1'] = shape[0] == 1
            factors['square kernel'] = shape[2] == shape[3]
        if name == 'pool_param' and isinstance(value, dict):
            ph, pw, s = (value.get(k) for k in ('pool_height', 'pool_width', 'stride'))
            if all(isinstance(v, int) for v in (ph, pw, s)):
                factors['square window'] = ph == pw
                factors['overlapping windows'] = s < max(ph, pw)
        if name == 'x' and shape and np.issubdtype(np.asarray(value).dtype, np.floating) \
                and ('y' in args):
            factors['scores near +-1000'] = bool(np.max(np.abs(value), initial=0) >= 100)
    return factors


# (factor, value under which the function is RIGHT) -> the likely cause when it is wrong
# otherwise; checked in this order, so the most specific comes first.
FACTOR_HINTS = [
    ('scores near +-1000', False,
     "right for ordinary scores, wrong when they reach +-1000: exp probably overflows; "
     "subtract each row's maximum before exp (and take the log of the shifted softmax)"),
    ('N = 1 or C = 1', True,
     "right when N = 1 or C = 1, wrong when both are larger: the (N, C) axes are probably "
     "reshaped where they should be transposed (a reshape keeps the memory order)"),
    ('C = 1', True,
     "right when C = 1, wrong when C > 1: the channel axis is probably reshaped where it "
     "should be transposed, or channels are not handled separately (summed, for a "
     "convolution)"),
    ('F = 1', True,
     "right for one filter, wrong for several: the filters are probably mixed up (an axis "
     "order or a reshape of the output)"),
    ('square input', True,
     "right for square inputs, wrong for non-square ones: height and width (their sizes, "
     "loop bounds or padding) are probably swapped somewhere"),
    ('square kernel', True,
     "right for square kernels, wrong for non-square ones: the kernel's height and width "
     "(HH and WW, e.g. in the padding of dout) are probably swapped"),
    ('square window', True,
     "right for square pooling windows, wrong for non-square ones: pool_height and "
     "pool_width are probably swapped"),
    ('overlapping windows', False,
     "right when the windows do not overlap, wrong when they do (stride < window): the "
     "gradients of overlapping windows probably overwrite each other, where they must add "
     "up (+=, or np.add.at)"),
    ('N = 1', False,
     "wrong only for a batch of one (N = 1): a .squeeze() or a reshape probably drops the "
     "batch axis; keep the shapes explicit, e.g. x.reshape(N, -1)"),
    ('N = 1', True,
     "right for one sample, wrong for a batch: the samples are probably mixed up (a sum, "
     "mean or reshape across the batch axis)"),
    ('T = 1', True,
     "right for one time step, wrong for several: the time axis is probably mixed up with "
     "another (a reshape or transpose of (N, T, ...))"),
    ('default sizes', True,
     "right for the default sizes only: a size is probably hard-coded; compute it from the "
     "constructor's arguments (e.g. the fc input size from input_dim, filter_size and the "
     "pool's floor for odd sizes)"),
    ('odd conv output', False,
     "right when the convolution's output has even height and width, wrong when odd: the "
     "2x2 pool's output size is probably rounded up; it is (H' // 2, W' // 2), rounded down"),
]


def factor_hints(probes):
    """The hint of the one factor that separates the right probes from the wrong ones
    ([] when none does, or several do)."""
    right = [p for p in probes if p.ok]
    wrong = [p for p in probes if not p.ok]
    if not right or not wrong:
        return []
    found = []
    for factor, good, text in FACTOR_HINTS:
        if not all(factor in p.factors for p in probes):
            continue
        if all(p.factors[factor] == good for p in right) and \
                all(p.factors[factor] != good for p in wrong):
            evidence = (f"right: {', '.join(p.label for p in right)}; "
                        f"wrong: {', '.join(p.label for p in wrong)}")
            found.append((text, evidence))
    # one factor explains the failure; several that separate the same probes are confounded
    # (a case differing in two factors at once): no factor can be named then
    return found if len(found) == 1 else []


# ---------------------------------------------------------------------- transforms

def _close(a, b, tolerance=1e-6):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return False
    scale = max(np.max(np.abs(b), initial=0), 1e-12)
    return bool(np.max(np.abs(a - b), initial=0) <= tolerance * scale)


def transform_hints(probe):
    """Hints from how the wrong value relates to the right one."""
    got, expected, what = probe.got, probe.expected, probe.what
    if got is None or expected is None:
        return []
    try:
        got = np.asarray(got)
        expected = np.asarray(expected)
        if got.dtype.kind not in 'biuf' or expected.dtype.kind not in 'biuf':
            return []
        got, expected_f = got.astype(np.float64), expected.astype(np.float64)
    except (TypeError, ValueError):
        return []
    evidence = f"{what} [{probe.label}]"
    if what == 'captions':
        return caption_hints(got, expected_f, evidence)
    if got.shape != expected_f.shape:
        if got.ndim == expected_f.ndim >= 2 and got.shape[:-2] == expected_f.shape[:-2] \
                and got.shape[-2:] == expected_f.shape[-2:][::-1]:
            return [("the shape has height and width swapped: the output size is probably "
                     "computed with H and W (or the window's sizes) exchanged",
                     f"{evidence}: shape {got.shape}, expected {expected_f.shape}")]
        if got.size == expected_f.size and got.ndim < expected_f.ndim:
            return [("the right number of values but a lower-dimensional shape: an axis of "
                     "size 1 was probably dropped (.squeeze(), or a reshape without it)",
                     f"{evidence}: shape {got.shape}, expected {expected_f.shape}")]
        return []
    finite = np.isfinite(expected_f)
    if np.any(np.isnan(got) & finite):
        return [(f"NaN in {what} where the right value is finite: probably exp of a large "
                 "score overflowed (subtract each row's maximum before exp) or 0/0",
                 evidence)]
    if np.any(np.isinf(got) & finite):
        return [(f"inf in {what} where the right value is finite: probably the log of a "
                 "probability that underflowed to 0 (use log-softmax: shifted scores minus "
                 "the log of the sum of their exps) or an overflowing exp", evidence)]
    if not np.any(expected_f):
        return []
    if _close(got, -expected_f):
        return [(f"{what} has the right size but the opposite sign: a sign is probably "
                 "flipped (e.g. p - 1 at the label, not 1 - p)", evidence)]
    ratio = _constant_ratio(got, expected_f)
    if ratio is not None:
        return [(f"{what} is {_ratio_text(ratio)} the right value everywhere: probably a "
                 "missing or extra factor (an average over N, a 1/N in the gradient, a 2 from "
                 "a square, a tie count)", f"{evidence}: ratio {ratio:.4g}")]
    if got.ndim >= 2 and got.shape[-1] == got.shape[-2] and _close(got, np.swapaxes(expected_f, -1, -2)):
        return [(f"{what} is the right values with its last two axes transposed: height and "
                 "width are probably swapped", evidence)]
    if got.ndim >= 2 and _same_values_other_order(got, expected_f):
        return [(f"{what} holds the right values in the wrong places: probably a reshape where "
                 "a transpose is needed (e.g. (C, N, ...) reshaped to (N, C, ...))", evidence)]
    return []


def _constant_ratio(got, expected):
    mask = np.abs(expected) > 1e-9 * np.max(np.abs(expected))
    if not np.any(mask):
        return None
    ratios = got[mask] / expected[mask]
    ratio = float(np.median(ratios))
    if abs(ratio - 1) < 1e-6 or ratio == 0 or not np.isfinite(ratio):
        return None
    return ratio if _close(got, ratio * expected) else None


def _ratio_text(ratio):
    if ratio > 1:
        return f"{ratio:.4g} times"
    return f"1/{1 / ratio:.4g} of"


def _same_values_other_order(got, expected):
    """The same multiset of values (to round-off), not in the same places."""
    a, b = np.sort(got.ravel()), np.sort(expected.ravel())
    return _close(a, b, 1e-9) and not _close(got, expected, 1e-9)


def caption_hints(got, expected, evidence):
    if got.shape != expected.shape or got.ndim != 2 or got.shape[1] < 2:
        return []
    if np.array_equal(got[:, 1:], expected[:, :-1]):
        return [("every word is one column late: column 0 probably holds <START> (column 0 "
                 "must be the first generated word)", evidence)]
    repeated = np.all(got == got[:, :1], axis=1)
    if np.array_equal(got[:, 0], expected[:, 0]) and np.all(repeated) and \
            not np.all(np.all(expected == expected[:, :1], axis=1)):
        return [("the first word is right and then repeats: the chosen word is probably not "
                 "fed back as the next step's input (or the hidden state not carried over)",
                 evidence)]
    return []


# -------------------------------------------------------------------------- verdict

def diagnose(probes, limit=2):
    """
    Hints (a list of strings, each 'Hint: ...' then an evidence line) for the probes of
    a failing function; [] when nothing explains the failure. Factor hints first, then
    what the first wrong probe's value shows.
    """
    found = factor_hints(probes)
    first_wrong = next((p for p in probes if not p.ok), None)
    if first_wrong is not None:
        # a factor already explains a NaN or inf (e.g. large scores): its hint says why
        found += [(text, evidence) for text, evidence in transform_hints(first_wrong)
                  if not (found and text.startswith(('NaN in', 'inf in')))]
    hints, seen = [], set()
    for text, evidence in found:
        if text not in seen:
            seen.add(text)
            hints.append(f"Hint: {text}.\n  evidence: {evidence}")
    return hints[:limit]
