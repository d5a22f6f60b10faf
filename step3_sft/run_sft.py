"""Fine-tune the course's base model with the loop of sft_exercise.py, from the command line.

    python run_sft.py                   # the notebook's run (FinetuneConfig.course_run()), one process
    torchrun --nproc_per_node 2 run_sft.py --batch-size 8      # 2 processes, same global batch
    accelerate launch --multi_gpu --num_processes 2 run_sft.py --batch-size 8
    python run_sft.py --resume                          # continue from output_dir/checkpoint.pt
    python run_sft.py --pack-length 512                 # packed micro-batches (course/packing.py)

Every FinetuneConfig field is an option (--learning-rate, --max-steps, --grad-accum-steps, ...).
Process 0 writes the metrics (output_dir/metrics.jsonl), the checkpoint and, with --results,
a JSON summary with held-out exact match before and after. `make bench-sft-loop` runs it with the
reference solution and writes benchmarks/results/step3_sft.json.
"""
import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this step's modules, wherever run from

import sft_exercise as sft  # noqa: E402  (the learner's loop: yours once the TODOs are done)


def parse(argv: list[str] | None = None) -> tuple[sft.FinetuneConfig, argparse.Namespace]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = sft.FinetuneConfig.course_run()
    for field in dataclasses.fields(sft.FinetuneConfig):
        value = getattr(defaults, field.name)
        if isinstance(value, bool):
            ap.add_argument(f"--{field.name.replace('_', '-')}", type=lambda s: s == "true",
                            default=value, metavar="true|false")
        elif isinstance(value, tuple):
            ap.add_argument(f"--{field.name.replace('_', '-')}", type=float, nargs=2,
                            default=value)
        else:
            kind = {int: int, float: float, str: str}.get(type(value), None)
            if value is None:  # optional ints: max_steps, warmup_steps, eval_batches, patience
                kind = int
            ap.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=value)
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per process")
    ap.add_argument("--train-limit", type=int, default=None, help="first N conversations only")
    ap.add_argument("--val-limit", type=int, default=500)
    ap.add_argument("--test-limit", type=int, default=None, help="exact match on N only")
    ap.add_argument("--results", type=Path, default=None, help="write a JSON summary here")
    ap.add_argument("--pack-length", type=int, default=0,
                    help="pack each micro-batch into rows of at most N tokens (0: pad)")
    args = ap.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(sft.FinetuneConfig)}
    values["adam_betas"] = tuple(values["adam_betas"])
    return sft.FinetuneConfig(**values), args


def main(argv: list[str] | None = None) -> dict:
    cfg, args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from course.data import load_split
    from course.evaluate import exact_match
    from course.models import count_parameters, load_base_model, load_tokenizer

    rank, world_size = sft.init_distributed()  # on GPUs: this process's own GPU, NCCL
    tokenizer = load_tokenizer(cfg.model_name)
    model = load_base_model(cfg.model_name,
                            device=sft.collective_device() if world_size > 1 else None)
    train_rows, val_rows = load_split("train"), load_split("validation")
    if args.train_limit:
        train_rows = train_rows.select(range(min(args.train_limit, len(train_rows))))
    val_rows = val_rows.select(range(min(args.val_limit, len(val_rows))))
    t0 = time.perf_counter()
    train = sft.tokenize_split(train_rows, tokenizer, cfg.max_length)
    val = sft.tokenize_split(val_rows, tokenizer, cfg.max_length)
    prep_s = time.perf_counter() - t0
    test = load_split("test")
    if args.test_limit:
        test = test.select(range(args.test_limit))
    base = exact_match(model, tokenizer, test, progress=rank == 0) if args.results else None
    samples = [r["messages"] for r in test.select(range(3))]
    from course.evaluate import chat_prompt
    prompts = [chat_prompt(tokenizer, m) for m in samples]

    collate = None
    if args.pack_length:
        from course.packing import PackedCollator
        collate = PackedCollator(args.pack_length)
    result = sft.train(model, tokenizer, train, val, cfg, resume=args.resume,
                       sample_prompts=prompts, collate=collate)
    summary = {"world_size": world_size, "steps": result.steps,
               "train_minutes": result.seconds / 60, "prepare_seconds": prep_s,
               "stopped_early": result.stopped_early, "best_step": result.best_step,
               "restored_best": result.restored_best, "pack_length": args.pack_length,
               "padding_waste": result.padding_waste,
               "final_val_loss": result.evals[-1]["loss"] if result.evals else None,
               "final_train_loss": result.train[-1]["loss"] if result.train else None,
               "tokens_per_s": (sum(r["tokens_per_s"] for r in result.train)
                                / max(len(result.train), 1))}
    if args.results and rank == 0:
        t0 = time.perf_counter()
        after = exact_match(model, tokenizer, test, progress=True)
        summary.update({
            "date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
            "torch_threads": torch.get_num_threads(), "parameters": count_parameters(model),
            "config": dataclasses.asdict(cfg), "train_conversations": len(train),
            "test_conversations": len(test), "eval_seconds": time.perf_counter() - t0,
            "base_exact_match": base.score, "sft_exact_match": after.score,
            "sft_per_task": after.per_task,
            "val_curve": [(e["step"], e["loss"]) for e in result.evals],
            "examples": after.predictions[:5]})
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"exact match {base.score:.1%} -> {after.score:.1%}; wrote {args.results}")
    if rank == 0:
        print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}))
    if world_size > 1:
        torch.distributed.destroy_process_group()
    return summary


if __name__ == "__main__":
    main()
