"""Can a base model read? Plain-text questions about held-out stories, per task (no chat format).

    python -m course.build.probe_reading                      # the embedded model
    python -m course.build.probe_reading --model build/exp/P2 --n 400
    python -m course.build.probe_reading --stories            # how well it writes (below)

Each probe is a story with held-out names, then `Question: ...` and `Answer:` as in the
pretraining corpus; the model's greedy continuation up to the end of the line must equal the
answer. This is the skill SFT builds on: a task the base model cannot do in plain text is one
SFT rarely teaches (docs/BASE_MODEL.md). Seconds on a CPU.

`--stories` measures the writing instead: bits per character on plain held-out stories (no
questions, no word lists; comparable across tokenizers, unlike a loss per token) and how often
the right pronoun follows "there was a little girl/boy named X." (She vs He).
"""
from __future__ import annotations

import argparse
import json
import math
import random
from collections import defaultdict

from course.build.make_data import SEED, name_pools
from course.build.stories import generate_stories
from course.build.tasks import NO_STORY_TASKS, TASKS
from course.build.tokenizer import ENDOFTEXT


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


def as_document(tokenizer, text: str, device):
    """`text` as the start of a pretraining document: (1, n) ids after <|endoftext|>."""
    import torch
    ids = [tokenizer.convert_tokens_to_ids(ENDOFTEXT)] + tokenizer(text)["input_ids"]
    return torch.tensor([ids], device=device)


def story_bits_per_char(model, tokenizer, n: int = 300, seed: int = SEED) -> float:
    """Bits per character of `n` plain stories with held-out names (each after <|endoftext|>)."""
    import torch
    nats = chars = 0.0
    with torch.no_grad():
        for _, story in generate_stories(n, name_pools(seed)[1], seed + 11):
            ids = as_document(tokenizer, story, model.device)
            nats += model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
            chars += len(story)
    return nats / chars / math.log(2)


def pronoun_agreement(model, tokenizer, n: int = 100, seed: int = SEED) -> float:
    """Share of `n` prompts "Once upon a time, there was a little {girl|boy} named X." (held-out
    names, alternating) after which the right one of " She" / " He" is the more likely."""
    import torch
    she, he = tokenizer(" She")["input_ids"][0], tokenizer(" He")["input_ids"][0]
    right = 0
    with torch.no_grad():
        for i, name in enumerate(name_pools(seed)[1][:n]):
            gender = ("girl", "boy")[i % 2]
            prompt = f"Once upon a time, there was a little {gender} named {name}."
            logits = model(input_ids=as_document(tokenizer, prompt, model.device)).logits[0, -1]
            right += bool(logits[she] > logits[he]) == (gender == "girl")
    return right / n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="path or hub id (default: the embedded model)")
    ap.add_argument("--n", type=int, default=360)
    ap.add_argument("--stories", action="store_true", help="measure the writing instead")
    args = ap.parse_args(argv)
    from course.models import load_base_model, load_tokenizer
    model, tokenizer = load_base_model(args.model), load_tokenizer(args.model)
    model.eval()
    if args.stories:
        print(json.dumps({"bits_per_char": story_bits_per_char(model, tokenizer),
                          "pronoun_agreement": pronoun_agreement(model, tokenizer)}, indent=1))
    else:
        print(json.dumps(probe_reading(model, tokenizer, args.n), indent=1))


if __name__ == "__main__":
    main()
