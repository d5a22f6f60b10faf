"""`make demo`, last part: a real pretrained chat model learns a new identity with LoRA.

    .venv/bin/python -m course.smollm2_demo --name Nova --author "the SFT course"

SmolLM2-135M-Instruct (course/smollm2.py; installed by `make setup`, converted on first use)
answers "Who are you?" and a question it was not trained on; then the course's own pieces (step
2's labels, step 3's train_step, step 4's LoRALinear) train LoRA adapters on identity
conversations that give it a new name and author, and it answers again. The template's default
system prompt ("... named SmolLM, trained by Hugging Face") stays in every conversation, in
training as in the chat, so the adapters learn to answer with the new name despite it.
"""
from __future__ import annotations

import argparse
import textwrap

import torch

from course import smollm2
from course.chat_sft import chat, finetune
from course.identity import (HELD_OUT_QUESTIONS, general_conversations,
                             identity_conversations, identity_share)
from course.models import count_parameters, load_base_model, load_tokenizer
from course.templates import default_system_prompt

QUESTIONS = ["Who are you?", HELD_OUT_QUESTIONS[0], "What is the capital of France?"]
# LoRA settings of the demo (benchmarks/results/smollm2_identity.json measures them)
STEPS, LR, RANK, BATCH = 16, 1e-3, 8, 8


def show(questions: list[str], answers: list[str]) -> None:
    for q, a in zip(questions, answers):
        print(f"  user: {q}")
        print("  " + "\n  ".join(textwrap.wrap(f"assistant: {a}", 96)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="Nova", help="the assistant's new name")
    ap.add_argument("--author", default="the SFT course", help="who made it, in its answers")
    ap.add_argument("--steps", type=int, default=STEPS, help="LoRA optimizer steps")
    ap.add_argument("--batch-size", type=int, default=BATCH, help="conversations per step")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    ap.add_argument("--max-new-tokens", type=int, default=40, help="tokens per answer, at most")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("\n=== SmolLM2-135M-Instruct, a real pretrained chat model: a new identity with LoRA ===")
    tokenizer = load_tokenizer(smollm2.NAME)
    model = load_base_model(smollm2.NAME, device="cpu")
    print(f"{count_parameters(model):,} parameters, Apache-2.0, weights quantised to 4 bits "
          f"(Q4_1) by its packager and de-quantised here; cached in {smollm2.checkpoint_dir()}")
    print(f"Its chat template's default system prompt: {default_system_prompt(tokenizer)!r}")
    print("\nBefore:")
    show(QUESTIONS, chat(model, tokenizer, QUESTIONS, args.max_new_tokens))
    data = identity_conversations(args.name, args.author, per_question=2) + \
        general_conversations()
    print(f"\nLoRA r={RANK} on every linear layer, {args.steps} steps of {args.batch_size} "
          f"conversations out of {len(data)}: identity (name {args.name!r}, author "
          f"{args.author!r}) and everyday questions; '{HELD_OUT_QUESTIONS[0]}' is not among them:")
    result = finetune(model, tokenizer, data, method="lora", steps=args.steps, lr=LR,
                      batch_size=args.batch_size, lora_r=RANK, lora_alpha=2 * RANK)
    print(f"loss {result.losses[0]:.2f} -> {result.losses[-1]:.2f} in {result.seconds:.0f} s "
          f"({result.trainable:,} trainable parameters)")
    print("\nAfter:")
    show(QUESTIONS, chat(model, tokenizer, QUESTIONS, args.max_new_tokens))
    held_out = chat(model, tokenizer, HELD_OUT_QUESTIONS, args.max_new_tokens)
    print(f"\nHeld-out phrasings answered with {args.name!r}: "
          f"{identity_share(held_out, args.name):.0%} of {len(held_out)}")


if __name__ == "__main__":
    main()
