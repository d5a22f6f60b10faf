"""course.dedup: near-duplicates by MinHash-LSH (checked against brute force and, when installed,
datasketch) and evaluation contamination by n-gram overlap; the committed measurement on the
course data (benchmarks/results/data_quality.json) is current and quoted by step 1."""
from __future__ import annotations

import itertools
import json
import random

import pytest

from course import REPO_ROOT
from course.data import load_split
from course.dedup import (MinHasher, contamination, conversation_text, drop_near_duplicates,
                          estimated_jaccard, jaccard, near_duplicate_pairs, shingles)

RESULTS = REPO_ROOT / "benchmarks" / "results" / "data_quality.json"


@pytest.fixture(scope="module")
def texts():
    return [conversation_text(m) for m in load_split("train").select(range(300))["messages"]]


def _edit(text: str, rng: random.Random, k: int = 1) -> str:
    """`text` with k words replaced (a near-duplicate of it)."""
    words = text.split(" ")
    for i in rng.sample(range(len(words)), k):
        words[i] = "zzq"
    return " ".join(words)


def test_shingles_and_jaccard():
    assert shingles("The cat sat on the mat.", n=3) == {"the cat sat", "cat sat on", "sat on the",
                                                        "on the mat"}
    assert shingles("Hi there", n=5) == {"hi there"} and shingles("", n=5) == set()
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5 and jaccard(set(), set()) == 1.0


def test_minhash_estimates_jaccard():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(5000)]
    hasher = MinHasher(128, seed=0)
    for target in (0.2, 0.5, 0.8, 0.95):
        common = rng.sample(vocab, 400)
        extra = int(round(400 * (1 - target) / (2 * target)))  # 400 / (400 + 2 extra) = target
        a = set(common) | {f"a{i}" for i in range(extra)}
        b = set(common) | {f"b{i}" for i in range(extra)}
        exact = jaccard(a, b)
        assert abs(exact - target) < 0.01
        assert abs(estimated_jaccard(hasher.signature(a), hasher.signature(b)) - exact) < 0.12


def test_lsh_finds_what_brute_force_finds(texts):
    """Planted near-duplicates (one or two words changed) and a pair below the threshold: the
    LSH pairs equal the brute-force pairs at >= 0.8 over all 320 x 319 / 2 pairs."""
    rng = random.Random(1)
    planted = [_edit(texts[i], rng, k=1) for i in range(20)]
    far = _edit(_edit(texts[20], rng, 6), rng, 6)   # many words changed: well below 0.8
    corpus = texts + planted + [far]
    sets = [shingles(t) for t in corpus]
    brute = {(i, j) for i, j in itertools.combinations(range(len(corpus)), 2)
             if jaccard(sets[i], sets[j]) >= 0.8}
    found = near_duplicate_pairs(corpus, threshold=0.8)
    assert {(i, j) for i, j, _ in found} == brute
    found_planted = {(i, 300 + i) for i in range(20)} & brute
    assert len(found_planted) >= 15  # one 5-gram window changed in texts of ~60 words
    assert (20, len(corpus) - 1) not in brute
    kept, dropped = drop_near_duplicates(corpus)
    assert {i for i, _, _ in dropped} >= {j for _, j in found_planted}
    assert len(kept) + len(dropped) == len(corpus)


def test_clusters_keep_the_first_text():
    base = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    a, b = base + " fifteen", base + " sixteen"
    kept, dropped = drop_near_duplicates([a, "something else entirely here today", b, a],
                                         threshold=0.8)
    assert kept == [0, 1]
    assert [(i, j) for i, j, _ in dropped] == [(2, 0), (3, 0)]


def test_contamination_counts_shared_ngrams(texts):
    copied, fresh = texts[5], " ".join(f"word{i}" for i in range(40))
    half = " ".join(texts[6].split(" ")[:30] + [f"new{i}" for i in range(30)])
    hits = dict(contamination([copied, fresh, half], texts, n=13))
    assert hits[0] == 1.0 and 1 not in hits and 0.2 < hits[2] < 0.8
    assert contamination([copied], texts[:5], n=13) == []


def test_agrees_with_datasketch(texts):
    datasketch = pytest.importorskip("datasketch")
    rng = random.Random(2)
    pairs = [(texts[i], _edit(texts[i], rng, k)) for i, k in zip(range(10), [1, 2, 4, 8] * 3)]
    mine = MinHasher(128)
    lsh = datasketch.MinHashLSH(threshold=0.8, num_perm=128)
    for n, (a, b) in enumerate(pairs):
        sa, sb = shingles(a), shingles(b)
        theirs = []
        for s in (sa, sb):
            m = datasketch.MinHash(num_perm=128)
            for x in s:
                m.update(x.encode("utf-8"))
            theirs.append(m)
        exact = jaccard(sa, sb)
        assert abs(theirs[0].jaccard(theirs[1]) - exact) < 0.12
        assert abs(estimated_jaccard(mine.signature(sa), mine.signature(sb)) - exact) < 0.12
        lsh.insert(f"a{n}", theirs[0])
        if exact >= 0.9:  # well above the threshold: datasketch's LSH finds it as well
            assert f"a{n}" in lsh.query(theirs[1])


@pytest.mark.slow
def test_committed_results_are_current_and_quoted():
    from benchmarks.data_quality import measure

    committed = json.loads(RESULTS.read_text(encoding="utf-8"))
    fresh = json.loads(json.dumps(measure()))  # tuples -> lists, as in the file
    assert fresh == committed
    text = (REPO_ROOT / "solutions" / "step1_data" / "tutorial.py").read_text(encoding="utf-8")
    train, val, test = committed["train"], committed["validation"], committed["test"]
    for quote in (f"of {train['conversations']:,} training conversations, "
                  f"{train['dropped_as_near_duplicates']} is a near-duplicate",
                  f"{val['contaminated_overlap_at_least_0.5']} of {val['conversations']} "
                  "validation conversations",
                  f"{val['sharing_any_13gram_with_train']} of {val['conversations']} validation",
                  f"{test['sharing_any_13gram_with_train']} of {test['conversations']:,} test"):
        assert quote in " ".join(text.replace("#", " ").split()), quote
    assert test["contaminated_overlap_at_least_0.5"] == 0  # "no test conversation" in the text
