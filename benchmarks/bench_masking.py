"""Speed of step 2's hand-written masking against the library way, on the whole train split.

    .venv/bin/python -m benchmarks.bench_masking            # cached: prints the last figures
    .venv/bin/python -m benchmarks.bench_masking --force    # measure again

Both sides run as `datasets.Dataset.map(batched=True)` over `course.data.load_split("train")`
and produce input_ids, attention_mask and labels:
- hand-written: `labels_for_batch` of solutions/step2_masking/masking_exercise.py (the answer
  key), which tokenizes each batch's contents in one call and builds the labels turn by turn;
- library: `tokenizer.apply_chat_template(batch, return_assistant_tokens_mask=True)`, labels
  from the assistant mask.
Requirement: the hand-written way is at least as fast (ratio >= 1). Each side runs
`--repeat` times, alternating, and the best time counts (the machine is shared). The outputs are
checked to be identical. Results are cached in build/bench/ under a fingerprint of the module,
the data, the tokenizer and the library versions, and written to
benchmarks/results/masking_step2.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import datasets
import tokenizers
import transformers

from course import REPO_ROOT
from course.data import IGNORE_INDEX, load_split, raw_path
from course.grading import load_reference
from course.models import EMBEDDED_MODEL_DIR, load_tokenizer

RESULTS = Path(__file__).resolve().parent / "results" / "masking_step2.json"
CACHE_DIR = REPO_ROOT / "build" / "bench"
MODULE = REPO_ROOT / "solutions" / "step2_masking" / "masking_exercise.py"


def fingerprint(repeat: int, batch_size: int) -> str:
    """Changes when anything that the timings depend on changes (not the machine's load)."""
    h = hashlib.sha256()
    files = [MODULE, Path(__file__), *(raw_path("train", s) for s in ("alpaca", "sharegpt",
                                                                       "messages"))]
    files += sorted(EMBEDDED_MODEL_DIR.glob("tokenizer*")) + sorted(
        EMBEDDED_MODEL_DIR.glob("chat_template*"))
    for path in files:
        h.update(path.name.encode() + path.read_bytes())
    h.update(json.dumps([transformers.__version__, tokenizers.__version__, datasets.__version__,
                         platform.python_version(), os.cpu_count(), repeat, batch_size,
                         os.environ.get("COURSE_MODEL", "")]).encode())
    return h.hexdigest()[:16]


def library_batch(batch: dict, tokenizer) -> dict:
    enc = tokenizer.apply_chat_template(batch["messages"], tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    return {"input_ids": enc["input_ids"],
            "attention_mask": [[1] * len(ids) for ids in enc["input_ids"]],
            "labels": [[t if m else IGNORE_INDEX for t, m in zip(ids, mask)]
                       for ids, mask in zip(enc["input_ids"], enc["assistant_masks"])]}


def measure(repeat: int, batch_size: int) -> dict:
    ref = load_reference("step2_masking", "masking_exercise")
    tokenizer = load_tokenizer()
    train = load_split("train")
    datasets.disable_progress_bars()
    common = dict(batched=True, batch_size=batch_size, remove_columns=train.column_names,
                  load_from_cache_file=False, keep_in_memory=True)
    sides = {
        "hand_written": lambda: train.map(ref.labels_for_batch, with_indices=True,
                                          fn_kwargs={"tokenizer": tokenizer}, **common),
        "library": lambda: train.map(library_batch, fn_kwargs={"tokenizer": tokenizer},
                                     **common),
    }
    times = {name: [] for name in sides}
    outputs = {}
    for _ in range(repeat):
        for name, run in sides.items():  # alternate, so a burst of load hits both sides
            start = time.perf_counter()
            outputs[name] = run()
            times[name].append(time.perf_counter() - start)
    for column in ("input_ids", "attention_mask", "labels"):
        if outputs["hand_written"][column] != outputs["library"][column]:
            raise SystemExit(f"the two ways disagree on {column!r}: fix that before timing")
    best = {name: min(t) for name, t in times.items()}
    return {"conversations": len(train), "batch_size": batch_size, "repeat": repeat,
            "hand_written_s": round(best["hand_written"], 3),
            "library_s": round(best["library"], 3),
            "ratio_library_over_hand_written": round(best["library"] / best["hand_written"], 2),
            "all_times_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "identical_outputs": True, "date": str(date.today()), "cpus": os.cpu_count(),
            "python": platform.python_version(), "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "datasets": datasets.__version__,
            "load_1min": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="measure even if a cached result fits")
    ap.add_argument("--repeat", type=int, default=3, help="runs per side; the best one counts")
    ap.add_argument("--batch-size", type=int, default=1000, help="rows per map batch")
    args = ap.parse_args(argv)

    key = fingerprint(args.repeat, args.batch_size)
    cache = CACHE_DIR / f"masking-{key}.json"
    if cache.exists() and not args.force:
        figures = json.loads(cache.read_text())
        print(f"(cached result {cache.relative_to(REPO_ROOT)}; --force to measure again)")
    else:
        figures = measure(args.repeat, args.batch_size)
        figures["fingerprint"] = key
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(figures, indent=1) + "\n")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=1) + "\n")
    ratio = figures["ratio_library_over_hand_written"]
    print(f"{figures['conversations']:,} conversations, datasets.map(batched=True), best of "
          f"{figures['repeat']}:")
    print(f"  hand-written labels_for_batch     {figures['hand_written_s']:.3f} s")
    print(f"  apply_chat_template + mask        {figures['library_s']:.3f} s")
    print(f"  ratio library / hand-written      {ratio:.2f}  "
          f"({'OK: at least as fast' if ratio >= 1 else 'SLOWER than the library'})")
    return 0 if ratio >= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
