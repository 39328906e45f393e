"""Tests for bleu.py on examples computed by hand (the arithmetic is in the comments).

Notation: p_n = clipped n-gram matches / hypothesis n-grams, summed over the corpus;
c = total hypothesis length, r = summed closest reference lengths,
BP = 1 if c > r else exp(1 - r/c), BLEU-N = BP * (p_1 * ... * p_N) ** (1/N).
"""
import math
import time

import numpy as np
import pytest

from bleu import (
    bleu_from_stats,
    bleu_scores,
    bleu_stats,
    brevity_penalty,
    corpus_bleu,
    decode_caption,
    decode_captions,
    group_references,
)


def words(sentence):
    return sentence.split()


# ----------------------------------------------------------------------------- hand-computed

def test_perfect_match_is_one():
    # Every n-gram of the hypothesis is in the reference: p_1 = ... = p_4 = 1; c = r = 6,
    # so BP = exp(1 - 6/6) = 1 and BLEU-1..4 = 1.
    sentence = words('the cat sat on the mat')
    assert bleu_scores([[sentence]], [sentence]) == {
        'bleu1': 1.0, 'bleu2': 1.0, 'bleu3': 1.0, 'bleu4': 1.0}


def test_papineni_the_the_the_modified_unigram_precision():
    # Papineni et al. 2002, section 2.1. Hypothesis: 7 x "the".
    # "the" occurs 2 times in reference 1 and once in reference 2, so its count is
    # clipped to max(2, 1) = 2:  p_1 = 2/7 (plain precision would be 7/7).
    # c = 7; reference lengths 6 and 7, closest to 7 is 7, so r = 7 and BP = 1.
    # BLEU-1 = 2/7.
    # Bigrams: 6 x "the the", none in a reference: p_2 = 0/6, so BLEU-2 = 0 unsmoothed;
    # with epsilon smoothing p_2 = 0.1/6: BLEU-2 = sqrt(2/7 * 0.1/6) = sqrt(1/210).
    references = [[words('the cat is on the mat'), words('there is a cat on the mat')]]
    hypotheses = [words('the the the the the the the')]
    stats = bleu_stats(references, hypotheses, max_n=2)
    assert stats == {'matches': [2, 0], 'totals': [7, 6], 'hyp_length': 7, 'ref_length': 7}
    assert corpus_bleu(references, hypotheses, max_n=1) == pytest.approx(2 / 7)
    assert corpus_bleu(references, hypotheses, max_n=2) == 0.0
    assert corpus_bleu(references, hypotheses, max_n=2, smoothing='epsilon') == \
        pytest.approx(math.sqrt(1 / 210))            # 0.0690065559...


def test_short_hypothesis_brevity_penalty():
    # Hypothesis "the cat sat on the" (5 words) is a prefix of the 6-word reference:
    # p_1 = 5/5, p_2 = 4/4, p_3 = 3/3, p_4 = 2/2, but c = 5 <= r = 6, so
    # BP = exp(1 - 6/5) = exp(-0.2) = 0.8187307531 and BLEU-1 = ... = BLEU-4 = exp(-0.2).
    references = [[words('the cat sat on the mat')]]
    hypotheses = [words('the cat sat on the')]
    scores = bleu_scores(references, hypotheses)
    for k in (1, 2, 3, 4):
        assert scores[f'bleu{k}'] == pytest.approx(math.exp(-0.2))
    assert scores['bleu4'] == pytest.approx(0.8187307531)


def test_hypothesis_shorter_than_n():
    # "the cat" (2 words) against "the cat sat on the mat": p_1 = 2/2, p_2 = 1/1, and
    # there is no trigram at all (0 matches out of 0). BP = exp(1 - 6/2) = exp(-2).
    # BLEU-1 = BLEU-2 = exp(-2) = 0.1353352832; BLEU-3 = BLEU-4 = 0 unsmoothed.
    # With epsilon smoothing, p_3 = p_4 = 0.1 / max(0, 1) = 0.1:
    # BLEU-4 = exp(-2) * (1 * 1 * 0.1 * 0.1) ** (1/4) = exp(-2) * sqrt(0.1) = 0.0427970...
    references = [[words('the cat sat on the mat')]]
    hypotheses = [words('the cat')]
    stats = bleu_stats(references, hypotheses)
    assert stats == {'matches': [2, 1, 0, 0], 'totals': [2, 1, 0, 0],
                     'hyp_length': 2, 'ref_length': 6}
    assert bleu_scores(references, hypotheses) == pytest.approx(
        {'bleu1': math.exp(-2), 'bleu2': math.exp(-2), 'bleu3': 0.0, 'bleu4': 0.0})
    assert corpus_bleu(references, hypotheses, smoothing='epsilon') == \
        pytest.approx(math.exp(-2) * math.sqrt(0.1))


def test_zero_4gram_matches_without_and_with_smoothing():
    # hyp "a cat sat on the mat" vs ref "a cat sat in the mat" (both 6 words, BP = 1):
    #   unigrams: a cat sat the mat match, "on" does not        -> p_1 = 5/6
    #   bigrams:  "a cat" "cat sat" "the mat" match of 5        -> p_2 = 3/5
    #   trigrams: "a cat sat" matches of 4                      -> p_3 = 1/4
    #   4-grams:  "a cat sat on" "cat sat on the" "sat on the mat": none -> p_4 = 0/3
    # BLEU-3 = (5/6 * 3/5 * 1/4) ** (1/3) = (1/8) ** (1/3) = 0.5
    # BLEU-4 = 0 without smoothing.
    # epsilon smoothing: p_4 = 0.1/3, BLEU-4 = (1/8 * 1/30) ** (1/4) = (1/240) ** (1/4)
    #                                        = 0.2540663740...
    references = [[words('a cat sat in the mat')]]
    hypotheses = [words('a cat sat on the mat')]
    assert bleu_stats(references, hypotheses)['matches'] == [5, 3, 1, 0]
    scores = bleu_scores(references, hypotheses)
    assert scores['bleu3'] == pytest.approx(0.5)
    assert scores['bleu4'] == 0.0
    smoothed = corpus_bleu(references, hypotheses, smoothing='epsilon')
    assert smoothed == pytest.approx((1 / 240) ** 0.25)
    assert smoothed == pytest.approx(0.2540663740)
    # epsilon is a parameter: with epsilon = 1, p_4 = 1/3: (1/8 * 1/3) ** (1/4) = (1/24) ** (1/4)
    assert corpus_bleu(references, hypotheses, smoothing='epsilon', epsilon=1.0) == \
        pytest.approx((1 / 24) ** 0.25)
    # smoothing leaves non-zero precisions alone
    assert bleu_scores(references, hypotheses, smoothing='epsilon')['bleu3'] == \
        pytest.approx(0.5)


def test_clipping_uses_max_count_over_references_not_sum():
    # hyp "the the the dog"; ref 1 "the cat the mat" has "the" twice, ref 2 "the dog" once.
    #   "the": min(3, max(2, 1)) = 2   (summing over references would allow 3)
    #   "dog": min(1, max(0, 1)) = 1   (a match in any reference counts)
    # p_1 = 3/4. c = 4; reference lengths 4 and 2, closest is 4, so r = 4 and BP = 1.
    # BLEU-1 = 0.75.
    references = [[words('the cat the mat'), words('the dog')]]
    hypotheses = [words('the the the dog')]
    assert bleu_stats(references, hypotheses, max_n=1)['matches'] == [3]
    assert corpus_bleu(references, hypotheses, max_n=1) == pytest.approx(0.75)


def test_corpus_level_is_not_the_average_of_sentence_scores():
    # sentence 1: hyp "the cat" = ref "the cat":                 2 of 2 unigrams match
    # sentence 2: hyp "a big red dog ran off" vs ref
    #             "a big red cat sat down": a, big, red match:  3 of 6
    # Both have c = r, so BP = 1 everywhere.
    # Sentence BLEU-1: 1 and 1/2; their average is 0.75.
    # Corpus BLEU-1 adds the counts first: (2 + 3) / (2 + 6) = 5/8 = 0.625.
    references = [[words('the cat')], [words('a big red cat sat down')]]
    hypotheses = [words('the cat'), words('a big red dog ran off')]
    assert corpus_bleu(references[:1], hypotheses[:1], max_n=1) == pytest.approx(1.0)
    assert corpus_bleu(references[1:], hypotheses[1:], max_n=1) == pytest.approx(0.5)
    assert corpus_bleu(references, hypotheses, max_n=1) == pytest.approx(5 / 8)


def test_brevity_penalty_is_corpus_level():
    # sentence 1: hyp "a b c" (3) vs ref "a b c d e" (5): too short on its own
    #             (sentence BP = exp(1 - 5/3) = 0.513)
    # sentence 2: hyp "a b c d e f" (6) vs ref "a b c d" (4): too long on its own
    # Corpus: c = 3 + 6 = 9, r = 5 + 4 = 9, c <= r so BP = exp(1 - 9/9) = 1.
    # p_1 = (3 + 4) / (3 + 6) = 7/9  ->  BLEU-1 = 7/9.
    references = [[words('a b c d e')], [words('a b c d')]]
    hypotheses = [words('a b c'), words('a b c d e f')]
    assert corpus_bleu(references[:1], hypotheses[:1], max_n=1) == \
        pytest.approx(math.exp(1 - 5 / 3))
    assert corpus_bleu(references, hypotheses, max_n=1) == pytest.approx(7 / 9)


def test_closest_reference_length_tie_goes_to_shorter_reference():
    # hyp "the cat sat on mat" has 5 words; references have 4 and 6 words, both 1 away.
    # The tie goes to the shorter: r = 4, c = 5 > r, so BP = 1.
    # (Taking the longer one would give BP = exp(1 - 6/5) = 0.8187.)
    # Unigrams: the, cat, sat, on, mat all occur in some reference: p_1 = 5/5, BLEU-1 = 1.
    references = [[words('the cat sat on'), words('the cat sat on the mat')]]
    hypotheses = [words('the cat sat on mat')]
    assert bleu_stats(references, hypotheses)['ref_length'] == 4
    assert corpus_bleu(references, hypotheses, max_n=1) == 1.0
    # order of the references does not matter
    assert bleu_stats([references[0][::-1]], hypotheses)['ref_length'] == 4


def test_empty_hypothesis_gives_zero_without_division_by_zero():
    # c = 0 -> BP = 0 -> BLEU = 0, smoothed or not.
    references = [[words('the cat')]]
    with np.errstate(all='raise'):
        assert corpus_bleu(references, [[]]) == 0.0
        assert corpus_bleu(references, [[]], smoothing='epsilon') == 0.0
        assert bleu_scores(references, [[]]) == {
            'bleu1': 0.0, 'bleu2': 0.0, 'bleu3': 0.0, 'bleu4': 0.0}
    assert brevity_penalty(0, 3) == 0.0
    assert corpus_bleu([], []) == 0.0                   # empty corpus


def test_empty_hypothesis_in_a_corpus_still_counts_toward_r():
    # hyp 1 "the cat" = ref "the cat"; hyp 2 is empty, its (only) reference has 2 words.
    # c = 2 + 0 = 2, r = 2 + 2 = 4: BP = exp(1 - 4/2) = exp(-1); p_1 = 2/2.
    # BLEU-1 = exp(-1) = 0.3678794412
    references = [[words('the cat')], [words('a dog')]]
    hypotheses = [words('the cat'), []]
    assert corpus_bleu(references, hypotheses, max_n=1) == pytest.approx(math.exp(-1))


def test_no_matching_unigram_is_zero_even_with_smoothing():
    # p_1 = 0/2: BLEU is 0 with or without smoothing (as in NLTK).
    references = [[words('the cat')]]
    hypotheses = [words('a dog')]
    assert corpus_bleu(references, hypotheses) == 0.0
    assert corpus_bleu(references, hypotheses, smoothing='epsilon') == 0.0


def test_bleu_k_uses_uniform_weights_over_1_to_k():
    # From the zero-4-gram example: p = 5/6, 3/5, 1/4, 0/3, BP = 1.
    # BLEU-1 = 5/6, BLEU-2 = sqrt(5/6 * 3/5) = sqrt(1/2), BLEU-3 = 0.5, BLEU-4 = 0.
    references = [[words('a cat sat in the mat')]]
    hypotheses = [words('a cat sat on the mat')]
    assert bleu_scores(references, hypotheses) == pytest.approx(
        {'bleu1': 5 / 6, 'bleu2': math.sqrt(0.5), 'bleu3': 0.5, 'bleu4': 0.0})
    for k in (1, 2, 3):
        assert corpus_bleu(references, hypotheses, max_n=k) == \
            pytest.approx(bleu_scores(references, hypotheses)[f'bleu{k}'])
    stats = bleu_stats(references, hypotheses, max_n=4)
    assert bleu_from_stats(stats, 2) == pytest.approx(math.sqrt(0.5))


def test_integer_tokens_work_like_words():
    references = [[[5, 6, 7, 8]]]
    hypotheses = [[5, 6, 7, 9]]
    # p = 3/4, 2/3, 1/2, 0/1 -> BLEU-3 = (3/4 * 2/3 * 1/2) ** (1/3) = (1/4) ** (1/3)
    assert corpus_bleu(references, hypotheses, max_n=3) == pytest.approx(0.25 ** (1 / 3))


# ----------------------------------------------------------------------------- captions

IDX_TO_WORD = ['<NULL>', '<START>', '<END>', '<UNK>', 'a', 'cat', 'on', 'the', 'mat', 'dog']


def test_decode_caption_strips_special_tokens_and_stops_at_end():
    # <START> a cat <END> the  -> ['a', 'cat'] (words after <END> are dropped)
    assert decode_caption([1, 4, 5, 2, 7], IDX_TO_WORD) == ['a', 'cat']
    # a model's sample(): no <START>, NULL padding; <UNK> is an ordinary token
    assert decode_caption(np.array([4, 3, 0, 0]), IDX_TO_WORD) == ['a', '<UNK>']
    assert decode_caption([2, 4, 5], IDX_TO_WORD) == []
    assert decode_caption([], IDX_TO_WORD) == []
    captions = np.array([[1, 4, 5, 6, 7, 8, 2, 0],
                         [7, 9, 2, 5, 5, 5, 5, 5]])
    assert decode_captions(captions, IDX_TO_WORD) == [
        ['a', 'cat', 'on', 'the', 'mat'], ['the', 'dog']]


def test_decode_caption_errors():
    with pytest.raises(ValueError, match=r'in \[0, 10\).*vocabulary of 10'):
        decode_caption([4, 10], IDX_TO_WORD)
    with pytest.raises(ValueError, match='1-D'):
        decode_caption(np.zeros((2, 3), dtype=int), IDX_TO_WORD)
    with pytest.raises(ValueError, match=r'shape \(N, T\)'):
        decode_captions(np.zeros(3, dtype=int), IDX_TO_WORD)


def test_bleu_from_integer_caption_arrays():
    # hypotheses (N, T) from sample(), references (N, R, T) with <START>/<END>/<NULL>.
    # Decoded: hyp 1 "a cat on the mat" vs refs "a cat on the mat", "the cat"; hyp 2
    # "the dog" vs "the dog", "the dog". Every n-gram matches; hyp 2 has no 3- or 4-grams,
    # so p_3 = 3/3 and p_4 = 2/2 come from hyp 1 alone. c = 5 + 2 = r: BLEU-1..4 = 1.
    hypotheses = np.array([[4, 5, 6, 7, 8, 2],
                           [7, 9, 2, 0, 0, 0]])
    references = np.array([[[1, 4, 5, 6, 7, 8, 2], [1, 7, 5, 2, 0, 0, 0]],
                           [[1, 7, 9, 2, 0, 0, 0], [1, 7, 9, 2, 0, 0, 0]]])
    scores = bleu_scores(references, hypotheses, idx_to_word=IDX_TO_WORD)
    assert scores == {'bleu1': 1.0, 'bleu2': 1.0, 'bleu3': 1.0, 'bleu4': 1.0}
    # references as lists of word lists work with int hypotheses too
    word_refs = [[words('a cat on the mat')], [words('the dog')]]
    assert corpus_bleu(word_refs, hypotheses, idx_to_word=IDX_TO_WORD) == 1.0
    # raw int arrays without idx_to_word would count <NULL> padding as words: refused
    with pytest.raises(ValueError, match='pass idx_to_word'):
        corpus_bleu(references, hypotheses)


def test_group_references_collects_captions_per_image():
    captions = np.array([[1, 4, 5, 2], [1, 7, 9, 2], [1, 5, 2, 0]])
    image_idxs = np.array([3, 0, 3])
    images, refs = group_references(captions, image_idxs, IDX_TO_WORD)
    np.testing.assert_array_equal(images, [0, 3])
    assert refs == [[['the', 'dog']], [['a', 'cat'], ['cat']]]
    images, raw = group_references(captions, image_idxs)
    np.testing.assert_array_equal(raw[1][1], [1, 5, 2, 0])
    with pytest.raises(ValueError, match=r'image_idxs has shape \(2,\), expected \(3,\)'):
        group_references(captions, image_idxs[:2])


# ----------------------------------------------------------------------------- errors

def test_input_errors_are_clear():
    refs = [[words('the cat')]]
    with pytest.raises(ValueError, match='2 hypotheses but 1 lists of references'):
        corpus_bleu(refs, [words('the cat'), words('a dog')])
    with pytest.raises(ValueError, match=r'hypothesis 0 is a string.*split'):
        corpus_bleu(refs, ['the cat'])
    with pytest.raises(ValueError, match=r'references\[0\]\[0\] is a string'):
        corpus_bleu([['the cat']], [words('the cat')])
    with pytest.raises(ValueError, match=r'references\[0\] must be a non-empty list'):
        corpus_bleu([[]], [words('the cat')])
    with pytest.raises(ValueError, match='max_n must be an integer >= 1'):
        corpus_bleu(refs, [words('the cat')], max_n=0)
    with pytest.raises(ValueError, match='smoothing must be one of'):
        corpus_bleu(refs, [words('the cat')], smoothing='add-one')
    with pytest.raises(ValueError, match='epsilon must be > 0'):
        corpus_bleu(refs, [words('the cat')], smoothing='epsilon', epsilon=0)
    stats = bleu_stats(refs, [words('the cat')], max_n=2)
    with pytest.raises(ValueError, match='cannot compute BLEU-3'):
        bleu_from_stats(stats, 3)


# ----------------------------------------------------------------------------- size, NLTK

def random_corpus(rng, num_sentences, num_refs, vocab=30, min_len=4, max_len=14):
    """Random references; each hypothesis is one of its references with about a third of
    the words replaced and a random length change, so all n-gram orders have matches."""
    def sentence(length):
        return list(rng.randint(vocab, size=length).astype(str))

    references, hypotheses = [], []
    for _ in range(num_sentences):
        refs = [sentence(rng.randint(min_len, max_len + 1)) for _ in range(num_refs)]
        hyp = list(refs[rng.randint(num_refs)])
        for k in np.flatnonzero(rng.rand(len(hyp)) < 0.3):
            hyp[k] = str(rng.randint(vocab))
        length = int(np.clip(len(hyp) + rng.randint(-3, 4), min_len, max_len))
        hyp = (hyp + sentence(max_len))[:length]
        references.append(refs)
        hypotheses.append(hyp)
    return references, hypotheses


def test_fast_enough_for_5000_hypotheses_with_5_references():
    references, hypotheses = random_corpus(np.random.RandomState(0), 5000, 5)
    start = time.perf_counter()
    scores = bleu_scores(references, hypotheses)
    elapsed = time.perf_counter() - start
    assert 0 < scores['bleu4'] < scores['bleu1'] < 1
    assert elapsed < 10, f'BLEU on 5000 x 5 captions took {elapsed:.1f} s'


def test_matches_nltk_corpus_bleu():
    """Cross-check with NLTK when it happens to be installed (it is not a dependency).

    Every hypothesis has >= 4 words: NLTK counts a shorter one as having one n-gram of
    each missing order (see the module docstring), so the two differ there by design.
    """
    nltk_bleu = pytest.importorskip('nltk.translate.bleu_score')
    rng = np.random.RandomState(1)
    weights = [(1.0,), (1 / 2,) * 2, (1 / 3,) * 3, (1 / 4,) * 4]
    for num_refs, vocab in ((1, 8), (3, 20), (5, 1000)):
        references, hypotheses = random_corpus(rng, 50, num_refs, vocab=vocab)
        assert min(bleu_stats(references, hypotheses)['matches']) > 0
        ours = bleu_scores(references, hypotheses)
        theirs = nltk_bleu.corpus_bleu(references, hypotheses, weights=weights)
        assert [ours[f'bleu{k}'] for k in (1, 2, 3, 4)] == pytest.approx(theirs, rel=1e-12)
    # epsilon smoothing = NLTK's method1, on a corpus with zero 4-gram matches
    references = [[words('a cat sat in the mat')], [words('the dog ran off fast')]]
    hypotheses = [words('a cat sat on the mat'), words('a dog ran on the grass')]
    assert bleu_stats(references, hypotheses)['matches'][3] == 0
    method1 = nltk_bleu.SmoothingFunction(epsilon=0.1).method1
    assert corpus_bleu(references, hypotheses, smoothing='epsilon') == pytest.approx(
        nltk_bleu.corpus_bleu(references, hypotheses, smoothing_function=method1),
        rel=1e-12)
