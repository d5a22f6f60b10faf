"""`make demo`: the "before" of SFT.

The embedded base model continues stories fluently, but given a held-out instruction in the chat
format it neither answers nor stops. Steps 1-4 of the course fix exactly that.
"""
from __future__ import annotations

import argparse
import json
import textwrap

from course.data import load_split
from course.device import seed_everything
from course.evaluate import chat_prompt, exact_match, generate
from course.models import EMBEDDED_MODEL_DIR, count_parameters, load_base_model, load_tokenizer

STORY_PROMPTS = [
    "Once upon a time, there was a little girl named Quellin.",
    "Dravo was a small boy who lived in a little house.",
    "One day, Mira and Tosk went to the beach.",
]


def show(title: str, prompt: str, completion: str, width: int = 96) -> None:
    print(f"\n--- {title}")
    print(textwrap.indent(prompt.rstrip(), "  | "))
    print("  >>> " + "\n      ".join(textwrap.wrap(repr(completion), width)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-eval", type=int, default=200, help="held-out conversations to score")
    args = ap.parse_args(argv)
    seed_everything(0)
    tokenizer, model = load_tokenizer(), load_base_model(device="cpu")
    info = json.loads((EMBEDDED_MODEL_DIR / "pretrain.json").read_text())
    print(f"Embedded base model: Qwen2, {count_parameters(model):,} parameters, "
          f"pretrained {info['minutes']:.1f} min on {info['device']}, "
          f"validation loss {info['validation_loss']:.3f} (stories with unseen names)")

    print("\n=== 1. It writes stories (greedy continuation of raw text) ===")
    for prompt, out in zip(STORY_PROMPTS, generate(model, tokenizer, STORY_PROMPTS,
                                                   max_new_tokens=60, stop_at_end_token=False)):
        show("story", prompt, out)

    print("\n=== 2. It does not follow instructions (held-out chat prompts) ===")
    test = load_split("test")
    for rec in test.select(range(3)):
        prompt = chat_prompt(tokenizer, rec["messages"])
        out = generate(model, tokenizer, [prompt], max_new_tokens=40)[0]
        show(f"task {rec['task']}; expected: {rec['messages'][-1]['content']!r}", prompt, out)

    em = exact_match(model, tokenizer, test.select(range(args.n_eval)), progress=True)
    print(f"\nExact match on {args.n_eval} held-out instructions: {em.score:.1%}")
    print("It continues the prompt as if it were a story and never emits <|im_end|>.")
    print("Supervised fine-tuning (steps 1-4) teaches the format and when to stop.")


if __name__ == "__main__":
    main()
