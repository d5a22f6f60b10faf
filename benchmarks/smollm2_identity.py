"""Identity SFT on SmolLM2-135M-Instruct: LoRA vs full fine-tuning, same data, same steps.

    .venv/bin/python -m benchmarks.smollm2_identity   # -> benchmarks/results/smollm2_identity.json

Both runs train with the course's pieces (course.chat_sft.finetune: step 2's labels, step 3's
train_step, step 4's LoRALinear) on identity conversations (a new name and author) mixed with
short everyday questions (course.identity). Measured before and after, greedy: the share of
held-out identity phrasings answered with the new name, and the fixed general questions
(facts, arithmetic, instructions) answered correctly -- "kept" counts those the base model got
right and the tuned one still gets right.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch

from course import REPO_ROOT, smollm2
from course.chat_sft import chat, finetune
from course.identity import (GENERAL_EVAL, HELD_OUT_QUESTIONS, general_conversations,
                             general_scores, identity_conversations, identity_share)
from course.models import load_base_model, load_tokenizer

OUT = REPO_ROOT / "benchmarks" / "results" / "smollm2_identity.json"
# the demo's LoRA (course/smollm2_demo.py) and a usual full fine-tuning rate for a small model
SETTINGS = {"lora": dict(lr=1e-3, lora_r=8, lora_alpha=16.0), "full": dict(lr=5e-5)}


def evaluate(model, tokenizer, name: str, max_new_tokens: int) -> dict:
    """Answers to the held-out identity phrasings and the general questions, scored."""
    questions = HELD_OUT_QUESTIONS + list(GENERAL_EVAL)
    start = time.perf_counter()
    answers = chat(model, tokenizer, questions, max_new_tokens=max_new_tokens)
    identity, general = answers[:len(HELD_OUT_QUESTIONS)], answers[len(HELD_OUT_QUESTIONS):]
    scores = general_scores(dict(zip(GENERAL_EVAL, general)))
    return {"identity_share": identity_share(identity, name),
            "general_correct": sum(scores.values()),
            "identity_answers": dict(zip(HELD_OUT_QUESTIONS, identity)),
            "general_answers": {q: {"answer": a, "correct": scores[q]}
                                for q, a in zip(GENERAL_EVAL, general)},
            "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--name", default="Nova")
    ap.add_argument("--author", default="the SFT course")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--lora-lr", type=float, default=SETTINGS["lora"]["lr"])
    ap.add_argument("--full-lr", type=float, default=SETTINGS["full"]["lr"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    tokenizer = load_tokenizer(smollm2.NAME)
    base = load_base_model(smollm2.NAME, device="cpu")
    data = identity_conversations(args.name, args.author, per_question=2) + \
        general_conversations()
    report = {"model": "SmolLM2-135M-Instruct (Q4_1 weights de-quantised to fp32)",
              "name": args.name, "author": args.author, "steps": args.steps,
              "batch_size": args.batch_size, "train_conversations": len(data),
              "held_out_identity_questions": len(HELD_OUT_QUESTIONS),
              "general_questions": len(GENERAL_EVAL), "threads": args.threads,
              "cores": os.cpu_count(), "max_new_tokens": args.max_new_tokens}
    print("before ...", flush=True)
    report["before"] = before = evaluate(base, tokenizer, args.name, args.max_new_tokens)
    print(f"before: identity {before['identity_share']:.0%}, general "
          f"{before['general_correct']}/{len(GENERAL_EVAL)}", flush=True)
    right_before = {q for q, v in before["general_answers"].items() if v["correct"]}
    for method in args.methods:
        model = copy.deepcopy(base)
        settings = {**SETTINGS[method], "lr": args.lora_lr if method == "lora" else args.full_lr}
        result = finetune(model, tokenizer, data, method=method, steps=args.steps,
                          batch_size=args.batch_size, **settings)
        after = evaluate(model, tokenizer, args.name, args.max_new_tokens)
        kept = [q for q in right_before if after["general_answers"][q]["correct"]]
        report[method] = {"train_seconds": round(result.seconds, 1),
                          "train_minutes": round(result.seconds / 60, 2),
                          "trainable": result.trainable,
                          "supervised_tokens_per_s": round(result.tokens_per_s, 1),
                          "losses": [round(x, 4) for x in result.losses],
                          "settings": result.settings, "after": after,
                          "general_kept": len(kept), "general_right_before": len(right_before)}
        print(f"{method}: identity {before['identity_share']:.0%} -> "
              f"{after['identity_share']:.0%}, general kept {len(kept)}/{len(right_before)}, "
              f"{result.seconds / 60:.1f} min", flush=True)
        del model
    report["minutes"] = round((time.perf_counter() - start) / 60, 2)
    report["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]  # other jobs too
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"-> {args.out} ({report['minutes']:.1f} min)")
    return report


if __name__ == "__main__":
    main()
