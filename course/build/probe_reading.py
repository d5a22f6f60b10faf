"""Can a base model read? Plain-text questions about held-out stories, per task (no chat format).

    python -m course.build.probe_reading                      # the embedded model
    python -m course.build.probe_reading --model build/exp/P2 --n 400

Each probe is a story with held-out names, then `Question: ...` and `Answer:` as in the
pretraining corpus; the model's greedy continuation up to the end of the line must equal the
answer. This is the skill SFT builds on: a task the base model cannot do in plain text is one
SFT rarely teaches (docs/BASE_MODEL.md). Seconds on a CPU.
"""
from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict

from course.build.make_data import SEED, name_pools
from course.build.stories import generate_stories
from course.build.tasks import NO_STORY_TASKS, TASKS


def reading_probes(n: int, seed: int = SEED) -> list[tuple[str, str, str]]:
    """`n` (task, plain-text prompt, expected answer) triples on stories with held-out names,
    cycling through every task that reads a story."""
    rng = random.Random(f"{seed}-probe")
    tasks = [t for t in TASKS if t not in NO_STORY_TASKS]
    probes = []
    for i, (facts, story) in enumerate(generate_stories(n, name_pools(seed)[1], seed + 7)):
        task = tasks[i % len(tasks)]
        question, answer = TASKS[task](facts, rng)
        probes.append((task, f"{story}\nQuestion: {question}\nAnswer:", f" {answer}"))
    return probes


def probe_reading(model, tokenizer, n: int = 360, seed: int = SEED) -> dict[str, float]:
    """Share of correct plain-text answers per task (and "overall")."""
    from course.evaluate import generate
    probes = reading_probes(n, seed)
    outputs = generate(model, tokenizer, [p for _, p, _ in probes], max_new_tokens=24)
    hits: dict[str, list[bool]] = defaultdict(list)
    for (task, _, answer), out in zip(probes, outputs):
        hits[task].append(out.split("\n")[0] == answer)
    scores = {t: sum(h) / len(h) for t, h in sorted(hits.items())}
    scores["overall"] = sum(sum(h) for h in hits.values()) / len(probes)
    return scores


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="path or hub id (default: the embedded model)")
    ap.add_argument("--n", type=int, default=360)
    args = ap.parse_args(argv)
    from course.models import load_base_model, load_tokenizer
    model, tokenizer = load_base_model(args.model), load_tokenizer(args.model)
    print(json.dumps(probe_reading(model, tokenizer, args.n), indent=1))


if __name__ == "__main__":
    main()
