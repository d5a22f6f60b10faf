"""`make demo`: the base model before SFT, then full fine-tuning vs LoRA (step 4), then a real
pretrained chat model, SmolLM2-135M-Instruct, given a new identity with LoRA.

The embedded base model continues stories fluently, but given a held-out instruction in the chat
format it neither answers nor stops. Then the course's own code fine-tunes it twice on the same
batches — every parameter, and LoRA adapters — and compares quality, memory, checkpoint size and
speed, plus a LoRA rank sweep (course.full_vs_lora with the answer keys of steps 2-4). About 3
minutes on 2 CPU cores; on a CUDA GPU it runs there, with a longer budget. Last, SmolLM2 answers
"Who are you?" before and after a short LoRA identity fine-tuning (course/smollm2_demo.py).
"""
from __future__ import annotations

import argparse
import json
import textwrap

from pathlib import Path

from course import REPO_ROOT
from course.data import load_split
from course.device import pick_device, seed_everything
from course.evaluate import chat_prompt, exact_match, generate
from course.models import EMBEDDED_MODEL_DIR, count_parameters, load_base_model, load_tokenizer

STORY_PROMPTS = [
    "Once upon a time, there was a little girl named Quellin.",
    "Dravo was a small boy who lived in a little house.",
    "One day, Mira and Tosk went to the beach.",
]
OUT = REPO_ROOT / "build" / "demo"


def show(title: str, prompt: str, completion: str, width: int = 96) -> None:
    print(f"\n--- {title}")
    print(textwrap.indent(prompt.rstrip(), "  | "))
    print("  >>> " + "\n      ".join(textwrap.wrap(repr(completion), width)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-eval", type=int, default=200, help="held-out conversations to score")
    ap.add_argument("--before-only", action="store_true", help="skip the fine-tuning runs")
    ap.add_argument("--steps", type=int, help="optimizer steps per run (default: per device)")
    ap.add_argument("--ranks", type=int, nargs="*", help="LoRA rank sweep (default 1 4 8 32)")
    ap.add_argument("--out", type=Path, default=OUT, help="where the JSON and plots go")
    ap.add_argument("--no-smollm2", action="store_true",
                    help="skip the last part (SmolLM2's identity fine-tuning)")
    ap.add_argument("--smollm2-only", action="store_true", help="run only that last part")
    args = ap.parse_args(argv)
    if args.smollm2_only:
        return smollm2_identity()
    seed_everything(0)
    tokenizer, model = load_tokenizer(), load_base_model(device="cpu")
    info = json.loads((EMBEDDED_MODEL_DIR / "pretrain.json").read_text())
    print(f"Embedded base model: Qwen2, {count_parameters(model):,} parameters, "
          f"pretrained {info['minutes']:.1f} min on {info['device']}, "
          f"validation loss {info['validation_loss']:.3f} (stories with unseen names)")

    print("\n=== 1. It writes stories (greedy continuation of raw text) ===")
    for prompt, out in zip(STORY_PROMPTS[:1], generate(model, tokenizer, STORY_PROMPTS[:1],
                                                       max_new_tokens=60,
                                                       stop_at_end_token=False)):
        show("story", prompt, out)

    print("\n=== 2. It does not follow instructions (held-out chat prompts) ===")
    test = load_split("test")
    for rec in test.select(range(2)):
        prompt = chat_prompt(tokenizer, rec["messages"])
        out = generate(model, tokenizer, [prompt], max_new_tokens=40)[0]
        show(f"task {rec['task']}; expected: {rec['messages'][-1]['content']!r}", prompt, out)

    em = exact_match(model, tokenizer, test.select(range(args.n_eval)), progress=True)
    print(f"\nExact match on {args.n_eval} held-out instructions: {em.score:.1%}")
    print("It continues the prompt as if it were a story and never emits <|im_end|>.")
    print("Supervised fine-tuning (steps 1-4) teaches the format and when to stop.")
    if not args.before_only:
        full_vs_lora(args, em.score, args.n_eval)
    if not (args.before_only or args.no_smollm2):
        smollm2_identity()


def smollm2_identity() -> None:
    """A real pretrained chat model before and after a LoRA identity fine-tuning."""
    from course import smollm2_demo

    try:
        smollm2_demo.main([])
    except smollm2_demo.smollm2.SmolLM2NotInstalled as err:
        print(f"\n(SmolLM2 part skipped: {err})")


def full_vs_lora(args: argparse.Namespace, base_exact_match: float | None = None,
                 base_scored_on: int | None = None) -> None:
    """Step 4's comparison with the answer keys; prints the table and where the plots went.
    The base model's exact match (measured on the first `base_scored_on` test conversations)
    goes into the table only when the runs are scored on the same conversations."""
    import torch

    from course import full_vs_lora as fvl
    from course.grading import load_reference

    device = pick_device()
    overrides = {k: v for k, v in (("steps", args.steps),
                                   ("ranks", tuple(args.ranks) if args.ranks is not None
                                    else None)) if v is not None}
    if device.type == "cpu":
        overrides["threads"] = min(2, torch.get_num_threads())
    config = fvl.default_config(device, **overrides)
    print(f"\n=== 3. Fine-tuning: every parameter vs LoRA, on {device} ===")
    print(f"{config.label()}; then LoRA at r = {', '.join(map(str, config.ranks))}")
    lora, masking, sft = (load_reference(s, m) for s, m in
                          (("step4_lora", "lora_exercise"), ("step2_masking", "masking_exercise"),
                           ("step3_sft", "sft_exercise")))
    result = fvl.compare(lora, masking, sft, config, base=False)
    if base_scored_on == config.n_test:  # the same conversations (200 on a CPU, 1000 on CUDA)
        result.base_exact_match = base_exact_match
    print()
    print(result.table())
    print(f"({result.seconds / 60:.1f} min)")
    for key, path in fvl.save(result, args.out).items():
        print(f"{key:>7s}: {path}")


if __name__ == "__main__":
    main()
