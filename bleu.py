"""Corpus BLEU-1..4 for evaluating generated captions.

BLEU (Papineni et al., 2002, "BLEU: a Method for Automatic Evaluation of Machine
Translation") scores a corpus of hypotheses (generated captions), each against one or
more references (human captions of the same image). This is the corpus-level BLEU of
NLTK's `corpus_bleu` and sacrebleu; the differences from NLTK are listed at the end.

    from bleu import bleu_scores
    refs = [[['a', 'cat', 'on', 'a', 'mat'], ['the', 'cat', 'sits', 'on', 'the', 'mat']]]
    hyps = [['the', 'cat', 'sat', 'on', 'the', 'mat']]
    bleu_scores(refs, hyps)   # {'bleu1': 0.833, 'bleu2': 0.707, 'bleu3': 0.5, 'bleu4': 0.0}

    # Straight from a model: int captions (N, T) and the vocabulary
    bleu_scores(references, model.sample(features), idx_to_word=data['idx_to_word'])

Definition
----------
For hypothesis h_i (i = 1..N) with references R_i = {r_i1, r_i2, ...}, and n-gram order n:

  Clipped (modified) n-gram counts. count_h(g) is the number of times the n-gram g
  occurs in h; each hypothesis count is clipped at the largest number of times g occurs
  in a single reference (the maximum over references, not the sum):

      match_n = sum_i sum_{g in h_i} min(count_{h_i}(g), max_{r in R_i} count_r(g))
      total_n = sum_i (number of n-grams in h_i) = sum_i max(0, |h_i| - n + 1)

  Modified n-gram precision, summed over the WHOLE corpus before dividing (corpus BLEU is
  not the average of sentence BLEUs):

      p_n = match_n / total_n

  Brevity penalty, also corpus-level. c is the total hypothesis length and r the sum, over
  hypotheses, of the reference length closest to that hypothesis's length (on a tie the
  shorter reference, as NLTK):

      c = sum_i |h_i|,   r = sum_i L_i,   L_i = the length |r|, r in R_i, that
                                             minimizes |L_i - |h_i||; the smaller on a tie

      BP = 1                if c > r
           exp(1 - r / c)   if 0 < c <= r
           0                if c = 0         (all hypotheses empty)

  BLEU-N is the brevity penalty times the geometric mean of p_1..p_N, uniform weights 1/N:

      BLEU-N = BP * exp( (1/N) * sum_{n=1..N} log p_n )

  So BLEU-1 uses unigrams only, BLEU-4 unigrams to 4-grams (the usual "BLEU").

Zero counts and smoothing:
  - smoothing=None (the definition above): if any match_n = 0 for n <= N, then
    BLEU-N = 0 exactly. Short captions often have no matching 4-gram, so BLEU-4 on
    a single sentence is frequently 0; on a corpus it rarely is.
  - smoothing='epsilon' (NLTK's SmoothingFunction().method1, epsilon = 0.1 by default):
    every p_n with match_n = 0 is replaced by

        p_n = epsilon / max(total_n, 1)

    (NLTK's method1 computes (0 + epsilon) / total_n; the max(., 1) only matters when no
    hypothesis has n or more words, so total_n = 0; NLTK's denominator is 1 there too).
    The other p_n are left unchanged. If there is no matching unigram at all
    (match_1 = 0), BLEU is 0 even with smoothing, as in NLTK.

Tokens are compared with ==, so they can be words (str) or word indices (int); a
hypothesis must be a sequence of tokens, not a string.

Differences from NLTK's corpus_bleu (3.x), both in corner cases:
  - NLTK counts a hypothesis with fewer than n words as having 1 n-gram (its per-sentence
    denominator is max(1, number of n-grams)); here it has 0, as in Papineni et al. and
    sacrebleu. Results agree whenever every hypothesis has at least N words.
  - Without smoothing, when some match_n = 0 (n > 1), NLTK warns and returns a tiny
    positive number (about 1e-77 for BLEU-4 with one such n); here the result is 0.0.

Captions from a model arrive as int arrays (N, T). decode_captions turns them into token
lists: `<NULL>` and `<START>` are dropped and everything from `<END>` on is cut.
"""
import math
from collections import Counter

import numpy as np

from captions import END_TOKEN, NULL_TOKEN, START_TOKEN

SMOOTHING_METHODS = (None, 'epsilon')


# ----------------------------------------------------------------------------- captions

def decode_caption(caption, idx_to_word):
    """
    Turn one integer caption into a list of words.

    `<NULL>` and `<START>` are dropped; the caption ends before the first `<END>` (the
    `<END>` itself and everything after it are not returned).

    Inputs:
    - caption: sequence of ints of shape (T,), word indices into idx_to_word.
    - idx_to_word: list of V words, idx_to_word[i] is the word with index i.

    Returns:
    - words: list of str, the caption's words.

    Example (idx_to_word = ['<NULL>', '<START>', '<END>', 'a', 'cat']):
        decode_caption([1, 3, 4, 2, 0, 0], idx_to_word) == ['a', 'cat']
    """
    caption = np.asarray(caption)
    if caption.ndim != 1 or not (caption.size == 0 or np.issubdtype(caption.dtype, np.integer)):
        raise ValueError(f"caption must be a 1-D array of word indices, got shape "
                         f"{caption.shape} and dtype {caption.dtype}")
    V = len(idx_to_word)
    if caption.size and (caption.min() < 0 or caption.max() >= V):
        raise ValueError(f"caption has word indices in [{caption.min()}, {caption.max()}], "
                         f"expected them in [0, {V}) for a vocabulary of {V} words")
    words = []
    for index in caption.tolist():
        word = idx_to_word[index]
        if word == END_TOKEN:
            break
        if word not in (NULL_TOKEN, START_TOKEN):
            words.append(word)
    return words


def decode_captions(captions, idx_to_word):
    """
    Turn integer captions into lists of words, with decode_caption on each row.

    Inputs:
    - captions: int array of shape (N, T), e.g. from CaptioningRNN.sample(), or a list of
      N int sequences (lengths may differ).
    - idx_to_word: list of V words.

    Returns:
    - list of N lists of str.
    """
    if isinstance(captions, np.ndarray) and captions.ndim != 2:
        raise ValueError(f"captions must be an int array of shape (N, T), got shape "
                         f"{captions.shape}")
    return [decode_caption(caption, idx_to_word) for caption in captions]


def group_references(captions, image_idxs, idx_to_word=None):
    """
    Collect the reference captions of each image, for data that stores one caption per
    row with the index of its image (the course's COCO format: val_captions (N_c, T) and
    val_image_idxs (N_c,)).

    Inputs:
    - captions: int array of shape (N_c, T), one caption per row.
    - image_idxs: int array of shape (N_c,), the image of each caption.
    - idx_to_word: list of V words, or None. If given, captions are decoded to words
      (decode_caption); if None, each reference is the row as it is (an int array).

    Returns a tuple of:
    - images: int array of shape (N_img,), the distinct images, sorted.
    - references: list of N_img lists; references[k] holds the captions of images[k].

    Example: score one generated caption per image against all of that image's captions:
        images, refs = group_references(data['val_captions'], data['val_image_idxs'],
                                        data['idx_to_word'])
        hyps = model.sample(data['val_features'][images])
        bleu_scores(refs, hyps, idx_to_word=data['idx_to_word'])
    """
    captions = np.asarray(captions)
    image_idxs = np.asarray(image_idxs)
    if captions.ndim != 2:
        raise ValueError(f"captions must have shape (N_c, T), got shape {captions.shape}")
    if image_idxs.shape != (captions.shape[0],):
        raise ValueError(f"image_idxs has shape {image_idxs.shape}, expected "
                         f"({captions.shape[0]},) to match captions {captions.shape}")
    images, inverse = np.unique(image_idxs, return_inverse=True)
    references = [[] for _ in images]
    for caption, k in zip(captions, inverse.ravel()):
        references[k].append(caption if idx_to_word is None
                             else decode_caption(caption, idx_to_word))
    return images, references


# ----------------------------------------------------------------------------- inputs

def _prepare(references, hypotheses, idx_to_word):
    """Check the inputs and return (references, hypotheses) as lists of token lists."""
    hypotheses, references = list(hypotheses), list(references)
    if len(references) != len(hypotheses):
        raise ValueError(f"got {len(hypotheses)} hypotheses but {len(references)} lists of "
                         f"references: each hypothesis needs a list of its references")
    for i, (refs, hyp) in enumerate(zip(references, hypotheses)):
        if isinstance(hyp, str):
            raise ValueError(f"hypothesis {i} is a string ({hyp[:30]!r}); it must be a list "
                             f"of tokens, e.g. caption.split()")
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"references[{i}] must be a non-empty list of references (each "
                             f"a list of tokens), got {refs!r}")
        for j, ref in enumerate(refs):
            if isinstance(ref, str):
                raise ValueError(f"references[{i}][{j}] is a string ({ref[:30]!r}); it must "
                                 f"be a list of tokens, e.g. caption.split(), and "
                                 f"references[{i}] a list of such lists")
        if idx_to_word is None and any(isinstance(c, np.ndarray) for c in [hyp, *refs]):
            raise ValueError(f"hypothesis {i} or one of its references is an integer array: "
                             f"pass idx_to_word so that integer captions are decoded and "
                             f"<NULL>, <START>, <END> removed")
    if idx_to_word is not None:
        hypotheses = [_as_tokens(hyp, idx_to_word) for hyp in hypotheses]
        references = [[_as_tokens(ref, idx_to_word) for ref in refs] for refs in references]
    return references, hypotheses


def _as_tokens(caption, idx_to_word):
    """Decode an integer caption with decode_caption; a list of words stays as it is."""
    if np.issubdtype(np.asarray(caption).dtype, np.integer):
        return decode_caption(caption, idx_to_word)
    return list(caption)


def _check_max_n(max_n):
    if isinstance(max_n, bool) or not isinstance(max_n, (int, np.integer)) or max_n < 1:
        raise ValueError(f"max_n must be an integer >= 1, got {max_n!r}")


def _ngram_counts(tokens, n):
    """Counter of the n-grams (tuples of n tokens) in tokens; empty if len(tokens) < n."""
    tokens = tuple(tokens)
    return Counter(tokens[k:k + n] for k in range(len(tokens) - n + 1))


def _closest_ref_length(ref_lengths, hyp_length):
    """The reference length closest to hyp_length; on a tie the shorter one."""
    return min(ref_lengths, key=lambda length: (abs(length - hyp_length), length))


# ----------------------------------------------------------------------------- BLEU

def bleu_stats(references, hypotheses, max_n=4, idx_to_word=None):
    """
    The corpus statistics BLEU is computed from (see the module docstring).

    Inputs:
    - references: list of N lists of references; references[i] holds the references of
      hypothesis i, each a list of tokens. With idx_to_word: references[i] may be an int
      array (R_i, T) or a list of int sequences, and references an int array (N, R, T).
    - hypotheses: list of N lists of tokens; with idx_to_word an int array (N, T).
    - max_n: int >= 1, the highest n-gram order.
    - idx_to_word: list of V words or None; if given, integer captions are decoded with
      decode_caption (dropping <NULL>, <START>, cutting at <END>).

    Returns a dict with:
    - 'matches': list of max_n ints, matches[n-1] = match_n, the clipped n-gram matches.
    - 'totals': list of max_n ints, totals[n-1] = total_n, the hypothesis n-grams.
    - 'hyp_length': int, c, the total hypothesis length.
    - 'ref_length': int, r, the summed closest reference lengths.
    """
    _check_max_n(max_n)
    references, hypotheses = _prepare(references, hypotheses, idx_to_word)
    matches = [0] * max_n
    totals = [0] * max_n
    hyp_length = ref_length = 0
    for refs, hyp in zip(references, hypotheses):
        hyp_length += len(hyp)
        ref_length += _closest_ref_length([len(ref) for ref in refs], len(hyp))
        for n in range(1, max_n + 1):
            hyp_counts = _ngram_counts(hyp, n)
            if not hyp_counts:
                continue
            # Counter | Counter keeps the larger count of each n-gram: the max over refs.
            max_ref_counts = Counter()
            for ref in refs:
                max_ref_counts |= _ngram_counts(ref, n)
            matches[n - 1] += sum(min(count, max_ref_counts[gram])
                                  for gram, count in hyp_counts.items())
            totals[n - 1] += sum(hyp_counts.values())
    return {'matches': matches, 'totals': totals,
            'hyp_length': hyp_length, 'ref_length': ref_length}


def brevity_penalty(hyp_length, ref_length):
    """
    Corpus brevity penalty: 1 if c > r, 0 if c == 0, else exp(1 - r / c).

    Inputs:
    - hyp_length: int, c, the total hypothesis length.
    - ref_length: int, r, the summed closest reference lengths.

    Returns:
    - bp: float in [0, 1].
    """
    if hyp_length > ref_length:
        return 1.0
    if hyp_length == 0:
        return 0.0
    return math.exp(1.0 - ref_length / hyp_length)


def bleu_from_stats(stats, n, smoothing=None, epsilon=0.1):
    """
    BLEU-n (uniform weights 1/n over orders 1..n) from the output of bleu_stats.

    Inputs:
    - stats: dict from bleu_stats, computed with max_n >= n.
    - n: int >= 1, the highest n-gram order used.
    - smoothing: None or 'epsilon' (see the module docstring).
    - epsilon: float > 0, the count given to zero matches when smoothing='epsilon'.

    Returns:
    - bleu: float in [0, 1].
    """
    _check_max_n(n)
    if n > len(stats['matches']):
        raise ValueError(f"stats hold n-gram orders up to {len(stats['matches'])}, "
                         f"cannot compute BLEU-{n}")
    if smoothing not in SMOOTHING_METHODS:
        raise ValueError(f"smoothing must be one of {SMOOTHING_METHODS}, got {smoothing!r}")
    if smoothing == 'epsilon' and not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")

    matches, totals = stats['matches'][:n], stats['totals'][:n]
    bp = brevity_penalty(stats['hyp_length'], stats['ref_length'])
    # No matching unigram (this includes an empty corpus): 0, with or without smoothing.
    if bp == 0.0 or matches[0] == 0:
        return 0.0
    log_precisions = []
    for match, total in zip(matches, totals):
        if match > 0:
            log_precisions.append(math.log(match / total))
        elif smoothing is None:
            return 0.0
        else:  # 'epsilon'
            log_precisions.append(math.log(epsilon / max(total, 1)))
    return bp * math.exp(math.fsum(log_precisions) / n)


def corpus_bleu(references, hypotheses, max_n=4, smoothing=None, epsilon=0.1,
                idx_to_word=None):
    """
    Corpus BLEU-max_n: brevity penalty times the geometric mean of the corpus-level
    clipped n-gram precisions p_1..p_max_n (uniform weights). The exact definition is in
    the module docstring.

    Inputs:
    - references: list of N lists of references; references[i] holds the references of
      hypothesis i, each a list of tokens (words or ints). With idx_to_word, integer
      captions are accepted: references[i] an int array (R_i, T) or list of int
      sequences, or references an int array (N, R, T).
    - hypotheses: list of N lists of tokens; with idx_to_word an int array (N, T), e.g.
      the output of CaptioningRNN.sample().
    - max_n: int >= 1, highest n-gram order: 4 gives the usual BLEU(-4).
    - smoothing: None (any zero n-gram match count gives 0) or 'epsilon' (NLTK's
      SmoothingFunction().method1: a zero match count becomes epsilon).
    - epsilon: float > 0, used when smoothing='epsilon'.
    - idx_to_word: list of V words, or None if the captions already are token lists.

    Returns:
    - bleu: float in [0, 1].

    Example:
        corpus_bleu([[['the', 'cat', 'sat']]], [['the', 'cat', 'sat']], max_n=2)  # 1.0
    """
    stats = bleu_stats(references, hypotheses, max_n=max_n, idx_to_word=idx_to_word)
    return bleu_from_stats(stats, max_n, smoothing=smoothing, epsilon=epsilon)


def bleu_scores(references, hypotheses, max_n=4, smoothing=None, epsilon=0.1,
                idx_to_word=None):
    """
    Corpus BLEU-1, BLEU-2, ..., BLEU-max_n in one pass over the data.

    BLEU-k uses uniform weights 1/k over the orders 1..k. The inputs are those of
    corpus_bleu.

    Returns:
    - scores: dict {'bleu1': float, 'bleu2': float, ..., 'bleu<max_n>': float}.
    """
    stats = bleu_stats(references, hypotheses, max_n=max_n, idx_to_word=idx_to_word)
    return {f'bleu{k}': bleu_from_stats(stats, k, smoothing=smoothing, epsilon=epsilon)
            for k in range(1, max_n + 1)}
