"""The caption conventions the captioning models share (rnn.CaptioningRNN,
rnn.AttentionCaptioningRNN, transformer.CaptioningTransformer): the special tokens and the
checks of the captions and lengths the models are given.

Captions are int arrays (N, T) of word indices: <START> w_1 ... w_k <END> <NULL> ... <NULL>.
At training time step t reads captions[:, t] and is scored on predicting captions[:, t + 1];
positions whose target is <NULL> do not count. Sampling starts every caption from <START>
and returns the generated words only, pre-filled with <NULL>.

NumPy only, like the models that use it.
"""
import numpy as np

NULL_TOKEN = '<NULL>'     # padding after <END>; its targets are masked out of the loss
START_TOKEN = '<START>'   # the first input word of every caption
END_TOKEN = '<END>'       # the last word of a caption (for the models, just a word)


def special_tokens(word_to_idx):
    """Indices of <NULL> (required), <START> and <END> (None when absent: the homework's
    loss tests use a vocabulary with <NULL> only)."""
    if NULL_TOKEN not in word_to_idx:
        raise ValueError(f"word_to_idx must contain the token {NULL_TOKEN!r} (padding); "
                         f"got {len(word_to_idx)} words without it")
    return word_to_idx[NULL_TOKEN], word_to_idx.get(START_TOKEN), word_to_idx.get(END_TOKEN)


def check_captions(captions, N):
    """Integer captions (N, T) with T >= 2 (an input word and a target per step)."""
    captions = np.asarray(captions)
    if captions.ndim != 2 or captions.shape[0] != N or captions.shape[1] < 2:
        raise ValueError(f"captions must have shape (N, T) = ({N}, T) with T >= 2 to match "
                         f"features, got shape {captions.shape}")
    if not np.issubdtype(captions.dtype, np.integer):
        raise ValueError(f"captions must hold integer word indices, got dtype {captions.dtype}")
    return captions


def check_max_length(max_length):
    """max_length as an int if it is a non-negative integer (the number of words to
    sample); ValueError otherwise."""
    if int(max_length) != max_length or max_length < 0:
        raise ValueError(f"max_length must be a non-negative integer, got {max_length!r}")
    return int(max_length)


def start_words(start, N, model_name):
    """The first input words of N sampled captions, int32 (N,) all <START> (index start);
    ValueError naming model_name's sample if the vocabulary has no <START> (start None)."""
    if start is None:
        raise ValueError(f"{model_name}.sample needs the token {START_TOKEN!r} in word_to_idx")
    return np.full(N, start, dtype=np.int32)
