"""Build the course's instruction data and the pretraining corpus, deterministically.

    python -m course.build.make_data            # rewrites course/assets/data/ (byte-identical)
    python -m course.build.make_data --check    # fails if the committed files differ

Splits: train (three raw shapes), validation, and a held-out test whose character names never occur
in pretraining, train or validation. Files are written to a temporary folder first and moved into
place only when all of them are complete, so a failed run leaves the old files untouched.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

from course.build.stories import (COLORS, FEELINGS, ITEMS, PLACES, THINGS, StoryFacts,
                                  generate_stories, make_names, retelling)
from course.build.tasks import NO_STORY_TASKS, SYSTEM_PROMPTS, TASKS

SEED = 1234
N_NAMES, N_HELDOUT_NAMES = 100_000, 1000
SIZES = {"train": 12000, "validation": 500, "test": 1000}
P_MULTI_TURN, P_SYSTEM = 0.25, 0.3
#: Train-split task mix: the two tasks a small model learns last and least reliably (reading a count
#: and a found object out of the story; docs/BASE_MODEL.md) get twice the examples. Validation and
#: test keep a uniform mix, so their scores are comparable with every earlier measurement.
TRAIN_TASK_WEIGHTS = {task: 2 if task in ("count", "found") else 1 for task in TASKS}
ECHO_POOLS = [PLACES, THINGS, COLORS, ITEMS, FEELINGS, [str(n) for n in range(2, 10)]]
DATA_DIR = Path(__file__).resolve().parents[1] / "assets" / "data"
ROLE_TO_SHAREGPT = {"system": "system", "user": "human", "assistant": "gpt"}


def name_pools(seed: int = SEED) -> tuple[list[str], list[str]]:
    """(seen names, held-out names): the held-out ones appear only in the test split.

    The seen pool is large on purpose: with ~100k names, each appears in only a story or two, so
    the model cannot memorise names and must learn to copy them from context.
    """
    names = make_names(N_NAMES, seed)
    return names[:-N_HELDOUT_NAMES], names[-N_HELDOUT_NAMES:]


def user_turn(question: str, story: str | None) -> str:
    """The single layout every shape normalises to: question, blank line, story."""
    return question if story is None else f"{question}\n\n{story}"


def make_conversation(facts: StoryFacts, story: str, rng: random.Random, idx: str,
                      task_weights: dict[str, float] | None = None) -> dict:
    """One conversation in the canonical `messages` shape, plus its task metadata.

    `task_weights` (task -> relative weight) sets the first turn's task mix; None draws uniformly.
    """
    if task_weights is None:
        task = rng.choice(list(TASKS))
    else:
        task = rng.choices(list(task_weights), weights=list(task_weights.values()))[0]
    q, a = TASKS[task](facts, rng)
    messages = []
    if rng.random() < P_SYSTEM:
        messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    messages += [{"role": "user", "content": user_turn(q, None if task in NO_STORY_TASKS else story)},
                 {"role": "assistant", "content": a}]
    tasks = [task]
    if task not in NO_STORY_TASKS and rng.random() < P_MULTI_TURN:
        follow = rng.choice([t for t in TASKS if t not in NO_STORY_TASKS and t != task])
        q2, a2 = TASKS[follow](facts, rng)
        messages += [{"role": "user", "content": q2}, {"role": "assistant", "content": a2}]
        tasks.append(follow)
    return {"id": idx, "task": tasks[-1], "turn_tasks": tasks, "messages": messages}


def build_split(split: str, n: int, names: list[str], seed: int,
                task_weights: dict[str, float] | None = None) -> list[dict]:
    rng = random.Random(f"{seed}-{split}")
    stories = generate_stories(n, names, seed=rng.randrange(2**31))
    return [make_conversation(f, s, rng, f"{split}-{i:05d}", task_weights)
            for i, (f, s) in enumerate(stories)]


# --- raw shapes ----------------------------------------------------------------------------------
def to_alpaca(conv: dict) -> dict | None:
    """Alpaca holds one instruction/input/output triple: no system prompt, no second turn."""
    msgs = conv["messages"]
    if len(msgs) != 2:
        return None
    question, _, story = msgs[0]["content"].partition("\n\n")
    return {"id": conv["id"], "task": conv["task"], "instruction": question, "input": story,
            "output": msgs[1]["content"]}


def to_sharegpt(conv: dict) -> dict:
    turns = [{"from": ROLE_TO_SHAREGPT[m["role"]], "value": m["content"]} for m in conv["messages"]]
    return {"id": conv["id"], "task": conv["task"], "conversations": turns}


def write_train_shapes(convs: list[dict], rng: random.Random) -> dict[str, list[dict]]:
    """Spread train conversations over the three raw shapes step 1 teaches to normalise."""
    shapes: dict[str, list[dict]] = {"alpaca": [], "sharegpt": [], "messages": []}
    for conv in convs:
        alpaca = to_alpaca(conv)
        shape = rng.choice(["alpaca", "sharegpt", "messages"] if alpaca else ["sharegpt", "messages"])
        if shape == "alpaca":
            shapes["alpaca"].append(alpaca)
        elif shape == "sharegpt":
            shapes["sharegpt"].append(to_sharegpt(conv))
        else:
            shapes["messages"].append(conv)
    return shapes


# --- dirty records for the cleaning exercise -----------------------------------------------------
def make_dirty(clean: list[dict], rng: random.Random) -> list[dict]:
    """Clean conversations mixed with deliberately broken ones; `defect` names what is wrong
    (learners must find it without looking; tests use it as the answer key)."""
    def msgs(c: dict) -> list[dict]:
        return json.loads(json.dumps(c["messages"]))

    out = [dict(c, defect=None) for c in clean[:40]]
    broken = []
    for c in clean[40:48]:
        m = msgs(c); m[-1]["content"] = rng.choice(["", "   ", "\n"])
        broken.append(("empty_content", m))
    for c in clean[48:54]:
        m = msgs(c); m[-1]["content"] = rng.choice([None, 42, ["a", "list"], {"text": "x"}])
        broken.append(("non_string_content", m))
    for c in clean[54:60]:
        m = msgs(c)
        body = [x for x in m if x["role"] != "system"]
        broken.append(("wrong_role_order", [body[1], body[0]] + body[2:]))
    for c in clean[60:64]:
        m = msgs(c); m.append({"role": "user", "content": "Thanks!"})
        broken.append(("wrong_role_order", m))  # ends on a user turn: nothing to learn from
    for c in clean[64:70]:
        m = msgs(c)
        user = next(x for x in m if x["role"] == "user")
        body = user["content"].split("\n\n")[-1]
        user["content"] = user["content"] + (" " + body) * 12
        while len(user["content"]) < 2000:  # a task without a story: repeat until really long
            user["content"] += " " + body
        broken.append(("too_long", m))
    for c in clean[:8]:
        broken.append(("duplicate", msgs(c)))
    for i, (defect, m) in enumerate(broken):
        out.append({"id": f"dirty-{i:03d}", "task": None, "messages": m, "defect": defect})
    rng.shuffle(out)
    return out


# --- pretraining corpus --------------------------------------------------------------------------
def pretraining_documents(n: int, names: list[str], seed: int, qa_fraction: float,
                          qa_max: int = 3, retell_fraction: float = 0.0,
                          retell_shuffle: bool = False, echo_fraction: float = 0.0) -> list[str]:
    """Stories, some followed by a retelling, a repeated word list (`echo`) and plain-text
    question/answer pairs about them (reading practice, as web text has; no chat tokens, so the
    base model never sees the instruction format)."""
    rng = random.Random(f"{seed}-pretrain")
    docs = []
    for facts, story in generate_stories(n, names, seed=rng.randrange(2**31)):
        if retell_fraction and rng.random() < retell_fraction:
            story += "\n" + retelling(facts, rng if retell_shuffle else None)
        if echo_fraction and rng.random() < echo_fraction:
            story += "\n" + echo(story, rng)
        if rng.random() < qa_fraction:
            k = rng.randint(1, qa_max)
            tasks = rng.sample([t for t in TASKS if t not in NO_STORY_TASKS], k)
            qa = [TASKS[t](facts, rng) for t in tasks]
            story += "\n" + "\n".join(f"Question: {q}\nAnswer: {a}" for q, a in qa)
        docs.append(story)
    return docs


def echo(story: str, rng: random.Random) -> str:
    """A list of 6-10 random story words, then the same list again. The second copy can only be
    predicted by looking each word up in the first one, which teaches a model to copy any word
    it has read (an induction mechanism), not only names, which stories already repeat."""
    words = [rng.choice(pool) for pool in rng.choices(ECHO_POOLS, k=rng.randint(6, 10))]
    return f"Words: {' '.join(words)}. Again: {' '.join(words)}."


# --- writing -------------------------------------------------------------------------------------
def dump_jsonl(records: list[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")


def build_all(seed: int = SEED) -> dict[str, list[dict]]:
    seen, heldout = name_pools(seed)
    rng = random.Random(f"{seed}-shapes")
    train = build_split("train", SIZES["train"], seen, seed, TRAIN_TASK_WEIGHTS)
    files = {f"train.{k}.jsonl": v for k, v in write_train_shapes(train, rng).items()}
    files["validation.jsonl"] = build_split("validation", SIZES["validation"], seen, seed)
    files["test.jsonl"] = build_split("test", SIZES["test"], heldout, seed)
    files["dirty.jsonl"] = make_dirty(build_split("dirty", 70, seen, seed), rng)
    return files


def write_all(out_dir: Path = DATA_DIR, seed: int = SEED) -> None:
    """Write every file into a temporary folder, then move them into place together."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = build_all(seed)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".data-") as tmp:
        for name, records in files.items():
            dump_jsonl(records, Path(tmp) / name)
        for name in files:
            os.replace(Path(tmp) / name, out_dir / name)


def check(out_dir: Path = DATA_DIR, seed: int = SEED) -> list[str]:
    """Names of committed files that differ from a fresh build."""
    with tempfile.TemporaryDirectory() as tmp:
        write_all(Path(tmp), seed)
        return [p.name for p in sorted(Path(tmp).iterdir())
                if not (out_dir / p.name).exists()
                or (out_dir / p.name).read_bytes() != p.read_bytes()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args(argv)
    if args.check:
        stale = check()
        if stale:
            print("stale data files (run `make data`):", ", ".join(stale), file=sys.stderr)
            return 1
        print("data files are up to date")
        return 0
    write_all()
    for p in sorted(DATA_DIR.glob("*.jsonl")):
        print(f"{p.name:24s} {sum(1 for _ in p.open()):6d} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
