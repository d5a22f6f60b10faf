"""Data quality beyond exact duplicates: near-duplicates (MinHash) and evaluation contamination.

    pairs = near_duplicate_pairs(texts, threshold=0.8)       # [(i, j, jaccard), ...], i < j
    keep, dropped = drop_near_duplicates(texts)              # first of each cluster kept
    hits = contamination(eval_texts, train_texts, n=13)      # [(eval index, overlap), ...]
    text = conversation_text(messages)                       # the contents, one per line

Near-duplicates. Two texts are near-duplicates when the Jaccard similarity of their sets of word
5-grams (lower-cased words; `shingles`) is at least `threshold` (0.8 by default: four in five of
their 5-grams shared, e.g. the same answer with a word or two changed). Comparing every pair is
quadratic, so MinHash estimates the similarity from `num_perm` minimum hash values per text (two
texts share each minimum with probability equal to their Jaccard similarity) and locality-
sensitive hashing (LSH) finds the candidate pairs: the signature is cut into `bands` bands of
`num_perm / bands` values, and texts equal on any whole band are candidates. With 128 values in
32 bands of 4, a pair at similarity 0.8 becomes a candidate with probability 1 - (1 - 0.8^4)^32,
above 0.9999; each candidate's exact Jaccard similarity then decides, so nothing is reported on
an estimate alone.

Contamination. An evaluation item is contaminated when text it is scored on also occurs in the
training data: then a score measures recall, not the skill. `contamination` counts, for each
evaluation text, the fraction of its word n-grams (13 by default, as in GPT-3's decontamination)
that occur anywhere in the training texts.
"""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

_WORD = re.compile(r"\w+")
_PRIME = np.uint64((1 << 61) - 1)   # a Mersenne prime, as in datasketch's MinHash
_MAX = np.uint64((1 << 32) - 1)


def conversation_text(messages: Sequence[dict]) -> str:
    """The contents of a conversation's turns, one per line (roles and markers left out)."""
    return "\n".join(str(m.get("content", "")) for m in messages)


def words(text: str) -> list[str]:
    """Lower-cased words (runs of letters, digits and underscores); punctuation is dropped."""
    return _WORD.findall(text.lower())


def shingles(text: str, n: int = 5) -> set[str]:
    """The set of word n-grams of `text`, each as one string; a text of fewer than `n` words is
    one shingle (all its words), an empty text none."""
    w = words(text)
    if len(w) < n:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class MinHasher:
    """`num_perm` hash functions h(x) = ((a x + b) mod p) mod 2^32 over a 32-bit SHA-1 of each
    shingle, p = 2^61 - 1; a signature is each function's minimum over a text's shingles."""

    def __init__(self, num_perm: int = 128, seed: int = 0):
        rng = np.random.RandomState(seed)
        self.num_perm = num_perm
        # a, b < 2^31 so that a * h + b (h < 2^32) stays below 2^64: no overflow
        self.a = rng.randint(1, 1 << 31, size=num_perm, dtype=np.int64).astype(np.uint64)
        self.b = rng.randint(0, 1 << 31, size=num_perm, dtype=np.int64).astype(np.uint64)

    def signature(self, items: Iterable[str]) -> np.ndarray:
        """The MinHash signature (uint64, `num_perm` values) of a set of shingles; all 2^32 - 1
        (the largest value) for an empty set."""
        hashes = np.fromiter(
            (int.from_bytes(hashlib.sha1(s.encode("utf-8")).digest()[:4], "little")
             for s in items), dtype=np.uint64)
        if not hashes.size:
            return np.full(self.num_perm, _MAX, dtype=np.uint64)
        values = (hashes[:, None] * self.a[None, :] + self.b[None, :]) % _PRIME & _MAX
        return values.min(axis=0)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The share of positions where two signatures agree: an unbiased estimate of Jaccard."""
    return float(np.mean(sig_a == sig_b))


def _candidates(signatures: Sequence[np.ndarray], bands: int) -> set[tuple[int, int]]:
    rows = len(signatures[0]) // bands
    if rows * bands != len(signatures[0]):
        raise ValueError(f"num_perm {len(signatures[0])} is not a multiple of bands {bands}")
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        for i, sig in enumerate(signatures):
            buckets[sig[band * rows:(band + 1) * rows].tobytes()].append(i)
        for members in buckets.values():
            pairs.update((a, b) for k, a in enumerate(members) for b in members[k + 1:])
    return pairs


def near_duplicate_pairs(texts: Sequence[str], threshold: float = 0.8, n: int = 5,
                         num_perm: int = 128, bands: int = 32,
                         seed: int = 0) -> list[tuple[int, int, float]]:
    """(i, j, Jaccard) for every pair i < j of `texts` whose word-`n`-gram sets have Jaccard
    similarity >= `threshold`, among the MinHash-LSH candidates (see the module docstring), in
    order of (i, j). Identical texts are included (similarity 1.0)."""
    sets = [shingles(t, n) for t in texts]
    if not sets:
        return []
    hasher = MinHasher(num_perm, seed)
    signatures = [hasher.signature(s) for s in sets]
    out = []
    for i, j in sorted(_candidates(signatures, bands)):
        sim = jaccard(sets[i], sets[j])
        if sim >= threshold:
            out.append((i, j, sim))
    return out


def drop_near_duplicates(texts: Sequence[str], threshold: float = 0.8, n: int = 5,
                         **lsh) -> tuple[list[int], list[tuple[int, int, float]]]:
    """(kept indices, dropped): near-duplicate pairs joined into clusters (a ~ b and b ~ c puts
    a, b, c together), the first text of each cluster kept. `dropped` holds (index, the kept
    index of its cluster, its highest similarity to a member of the cluster)."""
    pairs = near_duplicate_pairs(texts, threshold, n, **lsh)
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    best: dict[int, float] = defaultdict(float)
    for i, j, sim in pairs:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
        best[i], best[j] = max(best[i], sim), max(best[j], sim)
    kept = [i for i in range(len(texts)) if root(i) == i]
    dropped = [(i, root(i), best[i]) for i in range(len(texts)) if root(i) != i]
    return kept, dropped


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The set of word n-grams of `text`, as tuples of words."""
    w = words(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def contamination(eval_texts: Sequence[str], train_texts: Iterable[str], n: int = 13,
                  min_overlap: float = 0.0) -> list[tuple[int, float]]:
    """(index, overlap) for every evaluation text with overlap > `min_overlap`, where overlap
    is the fraction of its word `n`-grams that occur in some training text (a text shorter than
    `n` words has none and is never reported)."""
    seen: set[tuple[str, ...]] = set()
    for text in train_texts:
        seen |= ngrams(text, n)
    out = []
    for i, text in enumerate(eval_texts):
        grams = ngrams(text, n)
        if grams:
            overlap = len(grams & seen) / len(grams)
            if overlap > min_overlap:
                out.append((i, overlap))
    return out
