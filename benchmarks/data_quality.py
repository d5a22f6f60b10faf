"""Near-duplicates in the course's training data, and its evaluation sets against it.

    .venv/bin/python -m benchmarks.data_quality      # -> benchmarks/results/data_quality.json

Each conversation is compared as its turns' contents, one per line (`course.dedup`). Near-
duplicates: Jaccard similarity of word 5-grams >= 0.8, found by MinHash-LSH (128 values, 32 bands)
and confirmed exactly. Contamination: the share of an evaluation conversation's word 13-grams
that occur in the training conversations; an item is counted as contaminated at >= 0.5, and
also listed when it has a near-duplicate in training. Deterministic; ~20 s on one core.
"""
from __future__ import annotations

import json
import statistics
from collections import Counter

from course import REPO_ROOT
from course.data import load_split
from course.dedup import (contamination, conversation_text, drop_near_duplicates,
                          near_duplicate_pairs, ngrams)

OUT = REPO_ROOT / "benchmarks" / "results" / "data_quality.json"
THRESHOLD, SHINGLE_N, CONTAMINATION_N, CONTAMINATED_AT = 0.8, 5, 13, 0.5


def measure() -> dict:
    """The counts written to data_quality.json."""
    train = load_split("train")
    train_ids = list(train["id"])
    texts = [conversation_text(m) for m in train["messages"]]
    kept, dropped = drop_near_duplicates(texts, THRESHOLD, SHINGLE_N)
    result = {
        "settings": {"near_duplicate_jaccard": THRESHOLD, "shingle_words": SHINGLE_N,
                     "num_perm": 128, "bands": 32, "contamination_ngram": CONTAMINATION_N,
                     "contaminated_at_overlap": CONTAMINATED_AT},
        "train": {"conversations": len(texts),
                  "exact_duplicates": len(texts) - len(set(texts)),
                  "near_duplicate_pairs": len(near_duplicate_pairs(texts, THRESHOLD, SHINGLE_N)),
                  "dropped_as_near_duplicates": len(dropped),
                  "kept": len(kept),
                  "dropped": [{"id": train_ids[i], "duplicate_of": train_ids[j],
                               "jaccard": round(s, 3)} for i, j, s in dropped]},
    }
    train_grams: Counter = Counter()
    for t in texts:
        train_grams.update(ngrams(t, CONTAMINATION_N))
    for split in ("validation", "test"):
        ds = load_split(split)
        ids, ev = list(ds["id"]), [conversation_text(m) for m in ds["messages"]]
        hits = contamination(ev, texts, CONTAMINATION_N)
        joint = near_duplicate_pairs(ev + texts, THRESHOLD, SHINGLE_N)
        near = sorted({i for i, j, _ in joint if i < len(ev) <= j})
        shared: Counter = Counter()
        for i, _ in hits:
            shared.update(" ".join(g) for g in ngrams(ev[i], CONTAMINATION_N) if g in train_grams)
        result[split] = {
            "conversations": len(ev),
            "sharing_any_13gram_with_train": len(hits),
            "median_overlap_of_those": round(statistics.median(o for _, o in hits), 3)
            if hits else 0.0,
            "contaminated_overlap_at_least_0.5": sum(o >= CONTAMINATED_AT for _, o in hits),
            "contaminated_ids": [ids[i] for i, o in hits if o >= CONTAMINATED_AT],
            "near_duplicate_of_a_train_conversation": len(near),
            "near_duplicate_ids": [ids[i] for i in near],
            "most_shared_13grams": sorted(shared.items(), key=lambda kv: (-kv[1], kv[0]))[:3],
        }
    return result


def main() -> None:
    result = measure()
    OUT.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if not isinstance(vv, list)}
                      for k, v in result.items()}, indent=1))
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
