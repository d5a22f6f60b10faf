"""LoRA vs full fine-tuning on a GPU: peak memory (measured next to its prediction), step time,
tokens/s, MFU, and the largest Qwen2.5 size each method trains on the card.

    python -m benchmarks.gpu_lora_efficiency                      # CUDA: 0.5B, 1.5B, 3B, 7B
    python -m benchmarks.gpu_lora_efficiency --sizes 0.5B --methods lora --steps 3
    python -m benchmarks.gpu_lora_efficiency --smoke --out /tmp/smoke   # CPU, tiny, seconds

The training step is `course.recipe`'s (its docstring says why each choice): full fine-tuning
in mixed precision (fp32 master weights and AdamW moments, bf16 autocast; `--precision bf16`
for pure bf16), LoRA r 64 / alpha 128 on every linear layer but the head (adapters fp32, base
frozen in bf16, no dropout unless --lora-dropout), the sparse chunked output-layer loss, SDPA
attention (FlashAttention on the GPU; checked once per size), fused AdamW. Models are
architecture-true Qwen2.5 configurations built on the GPU from their config (nothing is
downloaded); batches are random tokens, every position after the first supervised.

Measured per (size, method): peak memory = torch.cuda.max_memory_allocated() from before the
model is built to the end (`predicted`: course.memory.estimate_peak), step time = median over
the steps after the first (CUDA synchronised), tokens/s, MFU = course.flops.step_flops
"matmul" / step time / the card's dense bf16 peak (course.flops.PEAK_BF16_TFLOPS or
--peak-tflops), and `mfu_with_attention`.

Every row is appended to <out>/sweep.jsonl the moment it finishes and <out>/sweep.json is
rewritten, so a crash or a kill during the 7B row loses nothing before it; any error in a row
(out of memory or another CUDA error) is recorded in that row and the sweep goes on (after an
out-of-memory, larger sizes of that method are skipped unless --keep-going). <out> defaults to
benchmarks/results/gpu/<device>/ (course.gpu_results). Also writes sweep.png.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
import traceback
from datetime import date, datetime, timezone
from pathlib import Path

import torch
from tqdm.auto import tqdm

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from course import flops, gpu_results, memory  # noqa: E402
from course.recipe import (QWEN25, SIZES, TINY, Recipe, bf16_update_stall,  # noqa: E402
                           build_model, flash_attention_check, make_optimizer,
                           median_step_time, parameter_counts, qwen_config, random_batch,
                           training_step)


def course_inject_lora():
    """Step 4's reference inject_lora (solutions/step4_lora/lora_exercise.py)."""
    from course.grading import load_reference

    return load_reference("step4_lora", "lora_exercise").inject_lora


def recipe_for(method: str, args: argparse.Namespace) -> Recipe:
    return Recipe(method=method, precision=args.precision, lora_r=args.lora_r,
                  lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                  lora_impl=args.lora_impl, grad_ckpt=args.grad_ckpt, compile=args.compile)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(size: str, method: str, args: argparse.Namespace, device: torch.device) -> dict:
    """Train `args.steps` steps of (size, method); raises whatever the GPU raises."""
    cuda = device.type == "cuda"
    recipe = recipe_for(method, args)
    config = qwen_config(size)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        start_mem = torch.cuda.memory_allocated(device)
    inject = course_inject_lora() if method == "lora" and args.lora_impl == "course" else None
    model = build_model(config, recipe, device, inject_lora=inject, seed=args.seed)
    counts = parameter_counts(model)
    optimizer = make_optimizer(model, 1e-4 if method == "lora" else 1e-5)
    ids, positions, targets = random_batch(config, args.batch_size, args.seq_len,
                                           args.supervised, device, args.seed)
    times, losses = [], []
    for _ in range(args.steps):
        sync(device)
        t0 = time.perf_counter()
        losses.append(training_step(model, optimizer, ids, positions, targets, recipe))
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) - start_mem if cuda else None
    step_time = median_step_time(times)
    tokens = args.batch_size * args.seq_len
    work = flops.step_flops(config, recipe, args.batch_size, args.seq_len, args.supervised)
    predicted = memory.estimate_peak(config, recipe, args.batch_size, args.seq_len,
                                     args.supervised)
    peak_t = args.peak_tflops or (flops.peak_tflops(torch.cuda.get_device_name(device))
                                  if cuda else None)
    losses = [float(x) for x in losses]
    del model, optimizer
    return {
        "size": size, "method": method, "fits": True, "recipe": recipe.to_dict(),
        "parameters": counts["total"], "trainable": counts["trainable"],
        "matmul_parameters": counts["matmul"], "lora_parameters": counts["lora"],
        "peak_memory_bytes": peak, "peak_memory_gib": None if peak is None else peak / 2**30,
        "predicted_gib": predicted["total"] / 2**30, "predicted": predicted,
        "peak_over_predicted": None if peak is None else peak / predicted["total"],
        "step_time_s": step_time, "step_times_s": times, "tokens_per_step": tokens,
        "tokens_per_s": tokens / step_time, "flops": work,
        "mfu": flops.mfu(work["matmul"], step_time, peak_t),
        "mfu_with_attention": flops.mfu(work["matmul"] + work["attention"], step_time, peak_t),
        "loss_first": losses[0], "loss_last": losses[-1],
    }


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def error_row(size: str, method: str, err: BaseException) -> dict:
    oom = isinstance(err, torch.OutOfMemoryError)
    return {"size": size, "method": method, "fits": False, "out_of_memory": oom,
            "error": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}",
            "traceback": None if oom else traceback.format_exc(limit=3)[-1500:]}


def run_all(args: argparse.Namespace, device: torch.device,
            on_row=lambda row: None) -> list[dict]:
    """Every (size, method), sizes from small to large. Any exception of a row is recorded in
    it; after an out-of-memory the larger sizes of that method are skipped (unless
    --keep-going). `on_row(row)` is called as each row finishes."""
    results, failed = [], set()
    jobs = [(size, method) for size in args.sizes for method in args.methods]
    for size, method in tqdm(jobs, desc="sweep", disable=not args.progress):
        if method in failed and not args.keep_going:
            row = {"size": size, "method": method, "fits": False,
                   "skipped": "a smaller size did not fit"}
        else:
            error = None
            try:
                row = measure(size, method, args, device)
            except Exception as err:  # noqa: BLE001 - one row's failure must not lose the rest
                error = err
            if error is not None:     # leave the except block first: its traceback holds tensors
                row = error_row(size, method, error)
                if row["out_of_memory"]:
                    failed.add(method)
                del error
            free_memory(device)
        results.append(row)
        on_row(row)
        print(summary_line(row), flush=True)
    return results


def largest_fitting(results: list[dict], methods: list[str]) -> dict[str, str | None]:
    out = {}
    for method in methods:
        fits = [r for r in results if r["method"] == method and r["fits"]]
        out[method] = max(fits, key=lambda r: r["parameters"])["size"] if fits else None
    return out


def summary_line(r: dict) -> str:
    if not r["fits"]:
        return f"{r['size']:>6} {r['method']:<4}  did not run: {r.get('error') or r['skipped']}"
    mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    peak = "-" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.2f} GiB"
    return (f"{r['size']:>6} {r['method']:<4}  params {r['parameters'] / 1e6:9.1f}M  trainable "
            f"{r['trainable'] / 1e6:9.2f}M  peak {peak:>10} (predicted "
            f"{r['predicted_gib']:.2f} GiB)  step {r['step_time_s'] * 1e3:8.1f} ms  "
            f"{r['tokens_per_s']:10.0f} tok/s  MFU {mfu}")


def device_info(device: torch.device) -> dict:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"name": torch.cuda.get_device_name(device), "memory_bytes": props.total_memory,
                "cuda": torch.version.cuda, "capability": list(torch.cuda.get_device_capability())}
    return {"name": f"cpu ({platform.processor() or platform.machine()})", "memory_bytes": None,
            "threads": torch.get_num_threads()}


def plot(report: dict, path: Path) -> Path | None:
    """Peak memory (measured bars, predicted marks) and tokens/s (MFU on the bars) vs size."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sizes = list(dict.fromkeys(r["size"] for r in report["results"]))
    methods = report["settings"]["methods"]
    fig, (ax_mem, ax_tps) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(len(methods), 1)
    for k, method in enumerate(methods):
        rows = {r["size"]: r for r in report["results"] if r["method"] == method}
        xs = [i + (k - (len(methods) - 1) / 2) * width for i in range(len(sizes))]
        ok = [rows.get(s, {}).get("fits", False) for s in sizes]
        mem = [(rows[s].get("peak_memory_gib") or 0) if o else 0 for s, o in zip(sizes, ok)]
        pred = [rows[s]["predicted_gib"] if o else float("nan") for s, o in zip(sizes, ok)]
        tps = [rows[s]["tokens_per_s"] if o else 0 for s, o in zip(sizes, ok)]
        ax_mem.bar(xs, mem, width, label=f"{method} (measured)")
        ax_mem.plot(xs, pred, "k_", markersize=14, label="predicted" if k == 0 else None)
        bars = ax_tps.bar(xs, tps, width, label=method)
        for x, size, o, bar in zip(xs, sizes, ok, bars):
            if not o:
                for ax in (ax_mem, ax_tps):
                    ax.annotate("did not run", (x, 0), ha="center", va="bottom", color="red",
                                fontsize=7, rotation=90)
            elif rows[size]["mfu"] is not None:
                ax_tps.annotate(f"{100 * rows[size]['mfu']:.0f}%", (x, bar.get_height()),
                                ha="center", va="bottom", fontsize=8)
    if report["device"].get("memory_bytes"):
        ax_mem.axhline(report["device"]["memory_bytes"] / 2**30, color="gray", linestyle="--",
                       label="device memory")
    for ax in (ax_mem, ax_tps):
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_xlabel("model size")
        ax.legend(fontsize=8)
    ax_mem.set_ylabel("peak memory (GiB)" + ("" if report["device"].get("memory_bytes")
                                             else "; measured on CUDA only"))
    ax_tps.set_ylabel("tokens / s (MFU on the bars)")
    s = report["settings"]
    fig.suptitle(f"Full fine-tuning ({s['precision']}) vs LoRA (r={s['lora_r']}), "
                 f"{report['device']['name']}, {report['date']}, batch {s['batch_size']} x "
                 f"{s['seq_len']} tokens", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=None, help="comma-separated, from " + ", ".join(SIZES)
                   + " (default: the four Qwen2.5 sizes; with --smoke: tiny-a,tiny-b)")
    p.add_argument("--methods", default="full,lora", help="comma-separated: full, lora")
    p.add_argument("--smoke", action="store_true",
                   help="tiny configs, 3 steps, CPU unless --device: checks the script end to end")
    p.add_argument("--batch-size", type=int, default=None, help="default 2")
    p.add_argument("--seq-len", type=int, default=None, help="default 2048 (smoke: 32)")
    p.add_argument("--supervised", type=float, default=1.0,
                   help="fraction of each row scored by the loss (default 1: all but the first)")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per row; the first is left out of the median (default 6)")
    p.add_argument("--precision", choices=["mixed", "bf16"], default="mixed",
                   help="mixed: fp32 master weights + bf16 autocast (default); bf16: pure bf16")
    p.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing")
    p.add_argument("--compile", action="store_true", help="torch.compile the decoder layers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lora-r", type=int, default=None, help="rank, default 64 (smoke: 4)")
    p.add_argument("--lora-alpha", type=float, default=None, help="default 2 x rank")
    p.add_argument("--lora-dropout", type=float, default=0.0,
                   help="default 0: dropout keeps a copy of every adapted input (memory)")
    p.add_argument("--lora-impl", choices=["course", "peft"], default="course")
    p.add_argument("--device", default=None, help="default cuda (smoke: cpu)")
    p.add_argument("--memory-fraction", type=float, default=None,
                   help="cap this process's share of GPU memory (emulate a smaller GPU)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="dense bf16 peak of the device, if not in course.flops.PEAK_BF16_TFLOPS")
    p.add_argument("--keep-going", action="store_true",
                   help="still try larger sizes of a method after one ran out of memory")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--append", action="store_true",
                   help="keep the rows already in <out>/sweep.jsonl (other sizes, earlier runs)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default benchmarks/results/gpu/<device>/)")
    args = p.parse_args(argv)
    smoke = args.smoke
    args.sizes = (args.sizes or ",".join(TINY if smoke else QWEN25)).split(",")
    args.methods = args.methods.split(",")
    for size in args.sizes:
        if size not in SIZES:
            p.error(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    for method in args.methods:
        if method not in ("full", "lora"):
            p.error(f"unknown method {method!r}; choose full or lora")
    defaults = dict(batch_size=(2, 2), seq_len=(32, 2048), steps=(3, 6), lora_r=(4, 64))
    for name, (small, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if smoke else full)
    if args.steps < 2:
        p.error("--steps must be at least 2 (the first is left out of the median)")
    args.lora_alpha = args.lora_alpha or 2.0 * args.lora_r
    args.device = args.device or ("cpu" if smoke else "cuda")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, use --smoke (CPU), or see "
                         "`python -m benchmarks.predict_memory --print` for the predictions")
    if device.type == "cuda" and args.memory_fraction:
        torch.cuda.set_per_process_memory_fraction(args.memory_fraction, device)
    info = device_info(device)
    out = args.out or gpu_results.device_dir(info["name"])
    out.mkdir(parents=True, exist_ok=True)
    print(f"device: {info['name']}  sizes: {args.sizes}  methods: {args.methods}  -> {out}")
    report = {
        "device": info, "date": date.today().isoformat(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.gpu_lora_efficiency",
                             *(argv if argv is not None else sys.argv[1:])]),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "peak_bf16_tflops": args.peak_tflops or (flops.peak_tflops(info["name"])
                                                  if device.type == "cuda" else None),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "configs": {s: SIZES[s] for s in args.sizes},
        "bf16_update_stall": bf16_update_stall(device=device),
        "flash_attention": (flash_attention_check(qwen_config(args.sizes[0]), args.batch_size,
                                                  args.seq_len, device)
                            if device.type == "cuda" else None),
        "results": [], "largest_fitting": {}, "complete": False,
    }
    json_path, rows_path = out / f"{gpu_results.SWEEP}.json", out / f"{gpu_results.SWEEP}.jsonl"
    if args.append and rows_path.exists():
        report["results"] = [json.loads(line) for line in rows_path.read_text().splitlines()
                             if line.strip()]
        report["settings"]["methods"] = list(dict.fromkeys(
            [r["method"] for r in report["results"]] + args.methods))
    else:
        rows_path.write_text("")

    def write(row: dict | None = None) -> None:
        if row is not None:
            with rows_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            report["results"].append(row)
        report["largest_fitting"] = largest_fitting(report["results"],
                                                    report["settings"]["methods"])
        json_path.write_text(json.dumps(report, indent=1) + "\n")

    write()
    threads = torch.get_num_threads()
    if args.smoke and device.type == "cpu":
        torch.set_num_threads(1)  # toy matmuls: extra threads only wait on a busy machine
    try:
        run_all(args, device, on_row=write)
    finally:
        torch.set_num_threads(threads)
    report["complete"] = True
    write()
    png = plot(report, out / f"{gpu_results.SWEEP}.png")
    print(f"largest size that trains: {report['largest_fitting']}")
    print(f"wrote {json_path}, {rows_path.name}" + (f" and {png.name}" if png else ""))
    return report


if __name__ == "__main__":
    main()
