"""The course's reference run: SFT of the embedded base model with the stock HF `Trainer`.

    make bench-reference          # python -m benchmarks.reference_sft

Full-parameter fine-tuning, assistant-only labels (the library way: `apply_chat_template` with
`{% generation %}` markers), CPU-friendly settings (fp32, no gradient checkpointing). Measures
held-out exact match before and after, and writes benchmarks/results/reference_sft.json. Every
later step's hand-written code is compared with these numbers.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch
from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

from course.data import load_split, tokenize_for_sft
from course.device import pick_device, seed_everything
from course.evaluate import exact_match
from course.models import count_parameters, load_base_model, load_tokenizer

RESULTS = Path(__file__).resolve().parent / "results" / "reference_sft.json"


def tokenized_split(split: str, tokenizer, max_length: int = 384):
    ds = load_split(split)
    return ds.map(lambda r: tokenize_for_sft(r["messages"], tokenizer, max_length),
                  remove_columns=ds.column_names, desc=f"tokenize {split}")


def sampling(group_by_length: bool) -> dict:
    """TrainingArguments for batches of similar lengths (less padding), in either spelling:
    `train_sampling_strategy` (newer transformers 5) or `group_by_length`."""
    if not group_by_length:
        return {}
    if "train_sampling_strategy" in TrainingArguments.__dataclass_fields__:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


class ExactMatchProbe(TrainerCallback):
    """Held-out exact match every `every` optimizer steps, to see when each task is learned
    (closed-class answers such as counts are learned as jumps). Its time is kept apart so that
    the run's training minutes stay comparable with runs without probes."""

    def __init__(self, model, tokenizer, test, every: int):
        self.model, self.tokenizer, self.test, self.every = model, tokenizer, test, every
        self.history: list[dict] = []
        self.seconds = 0.0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every:
            return
        t0 = time.time()
        em = exact_match(self.model, self.tokenizer, self.test, progress=False)
        self.seconds += time.time() - t0
        self.history.append({"step": state.global_step, "exact_match": em.score,
                             "per_task": em.per_task})
        print(f"step {state.global_step}: exact match {em.score:.1%} "
              f"(count {em.per_task.get('count', float('nan')):.0%})", flush=True)


def run(max_steps: int, lr: float, batch_size: int, seed: int, out_dir: Path,
        eval_limit: int | None = None, model_name: str | None = None,
        group_by_length: bool = False, probe_every: int = 0) -> dict:
    seed_everything(seed)
    tokenizer = load_tokenizer(model_name)
    test = load_split("test")
    if eval_limit:
        test = test.select(range(eval_limit))
    model = load_base_model(model_name, device="cpu" if pick_device().type == "cpu" else None)

    t0 = time.time()
    base = exact_match(model, tokenizer, test, progress=True)
    base_eval_s = time.time() - t0

    train = tokenized_split("train", tokenizer)
    args = TrainingArguments(
        output_dir=str(out_dir), max_steps=max_steps, per_device_train_batch_size=batch_size,
        learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=max(1, max_steps // 20),
        weight_decay=0.0, max_grad_norm=1.0, logging_steps=25, save_strategy="no",
        report_to="none", seed=seed, data_seed=seed, dataloader_num_workers=0,
        **sampling(group_by_length),
        bf16=False, fp16=False, gradient_checkpointing=False,  # both slow a tiny model on CPU
        use_cpu=pick_device().type == "cpu", disable_tqdm=False)
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    probe = ExactMatchProbe(model, tokenizer, test, probe_every) if probe_every else None
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator,
                      callbacks=[probe] if probe else None)
    t0 = time.time()
    trainer.train()
    train_s = time.time() - t0 - (probe.seconds if probe else 0.0)

    t0 = time.time()
    after = exact_match(model, tokenizer, test, progress=True)
    eval_s = time.time() - t0
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return {
        "date": date.today().isoformat(), "machine": platform.processor() or platform.machine(),
        "device": str(model.device), "torch_threads": torch.get_num_threads(),
        "parameters": count_parameters(model), "train_conversations": len(train),
        "test_conversations": len(test), "max_steps": max_steps, "batch_size": batch_size,
        "lr": lr, "seed": seed, "group_by_length": group_by_length,
        "model": model_name or "embedded", "train_minutes": train_s / 60,
        "eval_seconds": eval_s, "base_eval_seconds": base_eval_s,
        "base_exact_match": base.score, "base_per_task": base.per_task,
        "sft_exact_match": after.score, "sft_per_task": after.per_task,
        "train_loss_curve": losses,
        "exact_match_curve": probe.history if probe else [],
        "examples": after.predictions[:10],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=1200)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N only")
    ap.add_argument("--model", default=None, help="model path or hub id (default: embedded)")
    ap.add_argument("--group-by-length", action="store_true",
                    help="Trainer's group_by_length (batches of similar lengths)")
    ap.add_argument("--probe-every", type=int, default=0,
                    help="also measure held-out exact match every N steps (0: only at the end)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    res = run(args.max_steps, args.lr, args.batch_size, args.seed,
              Path("build/reference_sft"), args.eval_limit, args.model, args.group_by_length,
              args.probe_every)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"base exact match {res['base_exact_match']:.1%} -> SFT {res['sft_exact_match']:.1%} "
          f"({res['train_minutes']:.1f} min of training, {res['max_steps']} steps)")
    for task, v in sorted(res["sft_per_task"].items()):
        print(f"  {task:16s} {v:6.1%}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
