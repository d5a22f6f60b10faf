"""Speed on SmolLM2-135M-Instruct: the course's loop + LoRA vs 🤗 Trainer + peft, and generation
with and without the KV cache.

    .venv/bin/python -m benchmarks.smollm2_speed       # -> benchmarks/results/smollm2_speed.json

Training: the same identity + general conversations (course.identity), the same batches of
each step (course.batching.micro_batches_for_step), the same LoRA (r 8, alpha 16, every linear
layer of the decoder, no dropout), lr, schedule and clipping. The course's side is
`course.chat_sft.finetune` (step 3's train_step: logits only where the answer is scored); the
library side is `transformers.Trainer` on a peft model (the model's own loss: logits at every
position). Supervised tokens per second, the first step of each run left out (warm-up); each
side runs `--rounds` times in alternating order and its best run counts, so that both see the
same background load on a shared machine.

Generation: greedy, one chat prompt, a fixed number of new tokens, `use_cache` on and off.
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
from course.batching import micro_batches_for_step
from course.chat_sft import LORA_TARGETS, encode, finetune
from course.evaluate import chat_prompt
from course.identity import general_conversations, identity_conversations
from course.models import load_base_model, load_tokenizer

OUT = REPO_ROOT / "benchmarks" / "results" / "smollm2_speed.json"
LR, R, ALPHA, BATCH, WARMUP = 1e-3, 8, 16.0, 8, 3


def trainer_peft(model, tokenizer, conversations, steps: int, out_dir: Path) -> dict:
    """Trainer + peft on the batches `finetune` would use; per-step seconds and tokens."""
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from course.grading import load_reference

    sft = load_reference("step3_sft", "sft_exercise")
    cfg = sft.FinetuneConfig(learning_rate=LR, max_steps=steps, batch_size=BATCH,
                             warmup_steps=WARMUP, weight_decay=0.0, seed=0)
    examples = encode(conversations, tokenizer)
    batches = [micro_batches_for_step(examples, s, cfg, tokenizer.pad_token_id)[0]
               for s in range(steps)]
    peft_model = get_peft_model(model, LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0,
                                                  target_modules=LORA_TARGETS,
                                                  task_type="CAUSAL_LM"))
    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            ends.append(time.perf_counter())

    class InOrder(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(batches)

        def __len__(self):
            return len(batches)

    args = TrainingArguments(
        output_dir=str(out_dir), max_steps=steps, per_device_train_batch_size=1,
        learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=WARMUP, weight_decay=0.0,
        max_grad_norm=1.0, save_strategy="no", report_to="none", seed=0, use_cpu=True,
        dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True,
        logging_steps=steps)
    trainer = Trainer(model=peft_model, args=args, train_dataset=InOrder(),
                      data_collator=lambda items: items[0], callbacks=[Clock()])
    trainer.train()
    tokens = [int((b["labels"][:, 1:] != -100).sum()) for b in batches]
    return {"step_seconds": [b - a for a, b in zip(ends, ends[1:])], "step_tokens": tokens}


def generation_speed(model, tokenizer, new_tokens: int, rounds: int) -> dict:
    """Greedy tokens/s for one prompt, KV cache on and off (exactly `new_tokens` each), in
    alternating order over `rounds`; the best round of each counts (the least disturbed by
    other jobs on the machine)."""
    prompt = chat_prompt(tokenizer, [{"role": "user", "content":
                                      "Write a short story about a cat who learns to swim."}])
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = {"prompt_tokens": ids["input_ids"].shape[1], "new_tokens": new_tokens}
    rates: dict[str, list[float]] = {"with_cache": [], "without_cache": []}
    for r in range(rounds):
        for use_cache in ((True, False) if r % 2 == 0 else (False, True)):
            start = time.perf_counter()
            with torch.no_grad():
                gen = model.generate(**ids, max_new_tokens=new_tokens,
                                     min_new_tokens=new_tokens, do_sample=False,
                                     use_cache=use_cache, pad_token_id=tokenizer.pad_token_id)
            seconds = time.perf_counter() - start
            assert gen.shape[1] - ids["input_ids"].shape[1] == new_tokens
            rates["with_cache" if use_cache else "without_cache"].append(new_tokens / seconds)
    for key, values in rates.items():
        out[key] = {"tokens_per_s_rounds": [round(v, 2) for v in values],
                    "tokens_per_s": round(max(values), 2)}
    out["speedup"] = round(out["with_cache"]["tokens_per_s"]
                           / out["without_cache"]["tokens_per_s"], 2)
    return out


def steady(step_seconds: list[float], step_tokens: list[int]) -> float:
    return sum(step_tokens[1:]) / max(sum(step_seconds[1:]), 1e-9)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="training steps per run (1st not timed)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each side, alternating")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    tokenizer = load_tokenizer(smollm2.NAME)
    base = load_base_model(smollm2.NAME, device="cpu")
    data = identity_conversations("Nova", "the SFT course", per_question=2) + \
        general_conversations()
    report = {"model": "SmolLM2-135M-Instruct (fp32)", "threads": args.threads,
              "cores": os.cpu_count(), "steps": args.steps, "batch_size": BATCH,
              "lora": {"r": R, "alpha": ALPHA, "targets": LORA_TARGETS, "lr": LR}}
    print("generation ...", flush=True)
    report["generation"] = generation_speed(base, tokenizer, args.new_tokens, args.rounds)
    print(report["generation"], flush=True)

    def course_loop() -> dict:
        ours = finetune(copy.deepcopy(base), tokenizer, data, method="lora", steps=args.steps,
                        lr=LR, batch_size=BATCH, lora_r=R, lora_alpha=ALPHA,
                        warmup_steps=WARMUP, progress=False)
        return {"step_seconds": ours.step_seconds, "step_tokens": ours.step_tokens}

    def library() -> dict:
        return trainer_peft(copy.deepcopy(base), tokenizer, data, args.steps,
                            REPO_ROOT / "build" / "smollm2_speed")

    # alternating order, best round of each: both sides see the same background load
    runs: dict[str, list[dict]] = {"course_loop_lora": [], "trainer_peft": []}
    for r in range(args.rounds):
        order = [("course_loop_lora", course_loop), ("trainer_peft", library)]
        for key, run in (order if r % 2 == 0 else order[::-1]):
            runs[key].append(run())
            print(key, [round(x, 2) for x in runs[key][-1]["step_seconds"]], flush=True)
    for key, rounds in runs.items():
        rates = [steady(**x) for x in rounds]
        report[key] = {"step_seconds_rounds": [[round(s, 2) for s in x["step_seconds"]]
                                               for x in rounds],
                       "step_tokens": rounds[0]["step_tokens"],
                       "tokens_per_s_rounds": [round(v, 1) for v in rates],
                       "tokens_per_s": round(max(rates), 1)}
    assert runs["course_loop_lora"][0]["step_tokens"] == runs["trainer_peft"][0]["step_tokens"]
    report["ratio_course_vs_trainer_peft"] = round(
        report["course_loop_lora"]["tokens_per_s"] / report["trainer_peft"]["tokens_per_s"], 2)
    report["minutes"] = round((time.perf_counter() - start) / 60, 2)
    report["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]  # other jobs too
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"ratio {report['ratio_course_vs_trainer_peft']}x -> {args.out}")
    return report


if __name__ == "__main__":
    main()
