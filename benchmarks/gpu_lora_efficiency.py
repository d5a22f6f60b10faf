"""LoRA vs full fine-tuning on a GPU: peak memory, step time, tokens/s, MFU, and the largest
Qwen2.5 size each method can train.

    python -m benchmarks.gpu_lora_efficiency                      # CUDA: 0.5B, 1.5B, 3B, 7B
    python -m benchmarks.gpu_lora_efficiency --sizes 0.5B --methods lora --steps 3
    python -m benchmarks.gpu_lora_efficiency --smoke --out /tmp/smoke   # CPU, tiny, seconds

Models are architecture-true Qwen2.5 configurations (the numbers of the public config.json
files: 494M, 1.54B, 3.09B and 7.62B parameters, checked in tests/test_gpu_bench_smoke.py),
initialised from the config on the GPU (nothing is downloaded), in bf16, with SDPA attention.
Each (size, method) trains a few steps on random tokens with AdamW (fused, moments in bf16):

  full   every parameter trains
  lora   LoRA on every linear layer except the head (the seed's LLaMA-Factory recipe:
         lora_target all, rank 64, alpha 128, dropout 0.05), by peft or by the course's
         reference (--lora-impl course: solutions/step4_lora/lora_exercise.py). peft keeps
         A and B in fp32 by default (autocast_adapter_dtype) and runs the LoRA path in fp32;
         the course's module keeps them in the base layer's dtype (`lora_dtype` in the JSON)

Measured: peak memory = torch.cuda.max_memory_allocated() over model creation and training
(reset before each run), step time = median over the timed steps (after warm-up, CUDA
synchronised), tokens/s = batch * seq_len / step time. Also written next to each measurement:
the course's estimate (estimate_training_memory + activation_bytes of the step 4 module).

MFU (model FLOPs utilisation) = FLOPs per token * tokens/s / the device's dense bf16 peak
(datasheet, no sparsity; PEAK_BF16_TFLOPS below or --peak-tflops). FLOPs per token, with
N = parameters that multiply activations (every nn.Linear, the LM head included even when tied
to the embedding; the embedding lookup does no matmul), N_lora = LoRA's A and B parameters:
  full   6 N               forward 2N, backward 4N (input gradients 2N + weight gradients 2N)
  lora   4 N + 6 N_lora    forward 2N; backward still sends input gradients through every
                           frozen matmul (2N) but computes weight gradients only for A and B;
                           the LoRA matmuls themselves cost 6 N_lora
Attention scores (QK^T and AV, 12 * layers * hidden * seq_len per token for forward and
backward, the same for both methods) are left out of `mfu`, as in the 6N convention, and
included in `mfu_with_attention`.

Writes <out>/gpu_lora_efficiency_<device>_<date>.json and .png (device name and date inside).
Needs torch and transformers, plus peft for --lora-impl peft (or the course's module).
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import re
import statistics
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import torch
import transformers
from torch import nn
from transformers import AutoModelForCausalLM, Qwen2Config

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "gpu_lora"

# --- model sizes ---------------------------------------------------------------------------------
# Qwen/Qwen2.5-{0.5B,1.5B,3B,7B}/config.json: hidden, layers, heads, kv heads, intermediate, vocab,
# tied embeddings. All: SwiGLU, RMSNorm eps 1e-6, QKV bias, rope theta 1e6, 32768 positions.
QWEN25 = {
    "0.5B": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, intermediate_size=4864, vocab_size=151936,
                 tie_word_embeddings=True),
    "1.5B": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, intermediate_size=8960, vocab_size=151936,
                 tie_word_embeddings=True),
    "3B": dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, intermediate_size=11008, vocab_size=151936,
               tie_word_embeddings=True),
    "7B": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, intermediate_size=18944, vocab_size=152064,  # not 151936
               tie_word_embeddings=False),
}
SMOKE = {  # same architecture, toy sizes: a CPU runs both in seconds
    "tiny-a": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, intermediate_size=128, vocab_size=512,
                   tie_word_embeddings=True),
    "tiny-b": dict(hidden_size=96, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, intermediate_size=192, vocab_size=512,
                   tie_word_embeddings=False),
}
SIZES = {**QWEN25, **SMOKE}

# Dense bf16 tensor-core peaks (TFLOP/s, datasheets, without sparsity). First match wins.
PEAK_BF16_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0),
                    ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0)]


def qwen_config(size: str) -> Qwen2Config:
    return Qwen2Config(**SIZES[size], rms_norm_eps=1e-6, rope_theta=1e6,
                       max_position_embeddings=32768, use_cache=False)


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((t * 1e12 for key, t in PEAK_BF16_TFLOPS if key in name), None)


# --- FLOPs ---------------------------------------------------------------------------------------
def matmul_params(model: nn.Module) -> int:
    """Weights that multiply activations: every nn.Linear (a tied head counts: it does a
    matmul even though it shares the embedding's tensor)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def flops_per_token(method: str, n_matmul: int, n_lora: int, config: Qwen2Config,
                    seq_len: int) -> dict[str, int]:
    model = 6 * n_matmul if method == "full" else 4 * n_matmul + 6 * n_lora
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq_len
    return {"model": model, "attention": attention}


# --- one run -------------------------------------------------------------------------------------
def build_model(size: str, device: torch.device, dtype: torch.dtype, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(qwen_config(size), dtype=dtype,
                                                 attn_implementation="sdpa")
    return model


def apply_lora(model: nn.Module, args: argparse.Namespace) -> tuple[nn.Module, int]:
    """LoRA on all linear layers but the head; returns the model and N_lora."""
    if args.lora_impl == "peft":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(
            r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
            target_modules="all-linear", task_type="CAUSAL_LM"))
    else:
        lora = course_lora()
        lora.inject_lora(model, "all-linear", r=args.lora_r, alpha=args.lora_alpha,
                         dropout=args.lora_dropout)
    n_lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    return model, n_lora


def lora_dtype(model: nn.Module) -> str | None:
    return next((str(p.dtype).removeprefix("torch.") for n, p in model.named_parameters()
                 if "lora_" in n), None)


def course_lora():
    """The course's reference LoRA module (solutions/step4_lora/lora_exercise.py)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from course.grading import load_reference
    return load_reference("step4_lora", "lora_exercise")


def estimate(size: str, total: int, trainable: int, tokens: int, checkpointing: bool
             ) -> dict | None:
    """The course's memory estimate for this run (bf16 everywhere), or None without it."""
    try:
        lora = course_lora()
    except Exception:  # noqa: BLE001 - the benchmark runs without the course too
        return None
    act = lora.activation_bytes(qwen_config(size), tokens, 2, checkpointing)
    return lora.estimate_training_memory(total, trainable, "bf16", act)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(size: str, method: str, args: argparse.Namespace, device: torch.device,
            dtype: torch.dtype) -> dict:
    """Train `args.warmup + args.steps` steps; raises torch.OutOfMemoryError if it does not fit."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        start_mem = torch.cuda.memory_allocated(device)
    config = qwen_config(size)
    model = build_model(size, device, dtype, args.seed)
    n_matmul = matmul_params(model)
    n_lora = 0
    if method == "lora":
        model, n_lora = apply_lora(model, args)
    adapter_dtype = lora_dtype(model)
    params = {id(p): p for p in model.parameters()}.values()  # tied tensors once
    total = sum(p.numel() for p in params)
    trainable = [p for p in params if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    if args.grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    lr = 1e-4 if method == "lora" else 1e-5
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0, fused=cuda)
    g = torch.Generator(device=device).manual_seed(args.seed)
    ids = torch.randint(0, config.vocab_size, (args.batch_size, args.seq_len), generator=g,
                        device=device)
    weights_mem = torch.cuda.memory_allocated(device) - start_mem if cuda else None

    times, losses = [], []
    for _ in range(args.warmup + args.steps):
        sync(device)
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) - start_mem if cuda else None
    step_time = statistics.median(times[args.warmup:])
    tokens = args.batch_size * args.seq_len
    flops = flops_per_token(method, n_matmul, n_lora, config, args.seq_len)
    peak_flops_s = peak_flops(device, args.peak_tflops)
    tps = tokens / step_time
    mfu = flops["model"] * tps / peak_flops_s if peak_flops_s else None
    mfu_att = (flops["model"] + flops["attention"]) * tps / peak_flops_s if peak_flops_s else None
    del model, optimizer, trainable, params, ids, loss
    return {
        "size": size, "method": method, "fits": True, "parameters": total,
        "trainable": n_trainable, "matmul_parameters": n_matmul, "lora_parameters": n_lora,
        "lora_dtype": adapter_dtype,
        "peak_memory_bytes": peak, "memory_after_setup_bytes": weights_mem,
        "estimate_bytes": estimate(size, total, n_trainable, tokens, args.grad_ckpt),
        "step_time_s": step_time, "step_times_s": times, "tokens_per_step": tokens,
        "tokens_per_s": tps, "flops_per_token": flops, "mfu": mfu, "mfu_with_attention": mfu_att,
        "loss_first": losses[0], "loss_last": losses[-1],
    }


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_all(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> list[dict]:
    """Every (size, method), sizes from small to large; after an OOM the larger sizes of that
    method are skipped (unless --keep-going)."""
    results, failed = [], set()
    for size in args.sizes:
        for method in args.methods:
            if method in failed and not args.keep_going:
                results.append({"size": size, "method": method, "fits": False,
                                "skipped": "a smaller size did not fit"})
                continue
            oom = None
            try:
                result = measure(size, method, args, device, dtype)
            except torch.OutOfMemoryError as err:  # leave the except block before freeing
                oom = str(err).splitlines()[0][:300]
            free_memory(device)
            if oom is not None:
                failed.add(method)
                result = {"size": size, "method": method, "fits": False, "error": oom}
            results.append(result)
            print(summary_line(result), flush=True)
    return results


def largest_fitting(results: list[dict], methods: list[str]) -> dict[str, str | None]:
    out = {}
    for method in methods:
        fits = [r for r in results if r["method"] == method and r["fits"]]
        out[method] = max(fits, key=lambda r: r["parameters"])["size"] if fits else None
    return out


# --- report --------------------------------------------------------------------------------------
def gib(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def summary_line(r: dict) -> str:
    if not r["fits"]:
        return f"{r['size']:>6} {r['method']:<4}  does not fit ({r.get('error') or r['skipped']})"
    mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    est = r["estimate_bytes"]["total"] if r["estimate_bytes"] else None
    return (f"{r['size']:>6} {r['method']:<4}  params {r['parameters'] / 1e6:9.1f}M  trainable "
            f"{r['trainable'] / 1e6:9.2f}M  peak {gib(r['peak_memory_bytes']):>10}  "
            f"(estimate {gib(est)})  step {r['step_time_s'] * 1e3:8.1f} ms  "
            f"{r['tokens_per_s']:10.0f} tok/s  MFU {mfu}")


def device_info(device: torch.device) -> dict:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"name": torch.cuda.get_device_name(device), "memory_bytes": props.total_memory,
                "cuda": torch.version.cuda, "capability": list(torch.cuda.get_device_capability())}
    return {"name": f"cpu ({platform.processor() or platform.machine()})", "memory_bytes": None,
            "threads": torch.get_num_threads()}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def plot(report: dict, path: Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sizes = list(dict.fromkeys(r["size"] for r in report["results"]))
    methods = report["settings"]["methods"]
    fig, (ax_mem, ax_tps) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        rows = {r["size"]: r for r in report["results"] if r["method"] == method}
        xs = [i + (k - (len(methods) - 1) / 2) * width for i in range(len(sizes))]
        mem, tps, est = [], [], []
        for size in sizes:
            r = rows.get(size, {"fits": False})
            fits = r["fits"]
            measured = r.get("peak_memory_bytes") if fits else None
            mem.append((measured or 0) / 2**30)
            tps.append(r["tokens_per_s"] if fits else 0)
            e = r.get("estimate_bytes") if fits else None
            est.append(e["total"] / 2**30 if e else float("nan"))
        bars = ax_mem.bar(xs, mem, width, label=f"{method} (measured)")
        ax_mem.plot(xs, est, "k_", markersize=14, label="estimate" if k == 0 else None)
        tbars = ax_tps.bar(xs, tps, width, label=method)
        for x, size, bar, tbar in zip(xs, sizes, bars, tbars):
            r = rows.get(size, {"fits": False})
            if not r["fits"]:
                ax_mem.annotate("OOM", (x, 0), ha="center", va="bottom", color="red")
                ax_tps.annotate("OOM", (x, 0), ha="center", va="bottom", color="red")
            elif r["mfu"] is not None:
                ax_tps.annotate(f"{100 * r['mfu']:.0f}%", (x, tbar.get_height()),
                                ha="center", va="bottom", fontsize=8)
    if not any(r.get("peak_memory_bytes") for r in report["results"]):
        ax_mem.set_title("measured on CUDA only; estimates shown", fontsize=9)
    total = report["device"].get("memory_bytes")
    if total:
        ax_mem.axhline(total / 2**30, color="gray", linestyle="--", label="device memory")
    for ax in (ax_mem, ax_tps):
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_xlabel("model size")
        ax.legend(fontsize=8)
    ax_mem.set_ylabel("peak memory (GiB)")
    ax_tps.set_ylabel("tokens / s (MFU on the bars)")
    s = report["settings"]
    fig.suptitle(f"Full fine-tuning vs LoRA (r={s['lora_r']}), {report['device']['name']}, "
                 f"{report['date']}, batch {s['batch_size']} x {s['seq_len']} tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- main ----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # what to run
    p.add_argument("--sizes", default=None, help="comma-separated, from " + ", ".join(SIZES)
                   + " (default: the four Qwen2.5 sizes; with --smoke: tiny-a,tiny-b)")
    p.add_argument("--methods", default="full,lora", help="comma-separated: full, lora")
    p.add_argument("--smoke", action="store_true",
                   help="tiny configs, 2 steps, CPU unless --device: checks the script end to end")
    # the training step (defaults: the seed's recipe, batch 2 x cutoff 2048)
    p.add_argument("--batch-size", type=int, default=None, help="default 2 (smoke: 2)")
    p.add_argument("--seq-len", type=int, default=None, help="default 2048 (smoke: 32)")
    p.add_argument("--steps", type=int, default=None, help="timed steps, default 5 (smoke: 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps, default 2 (smoke: 1)")
    p.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing")
    p.add_argument("--seed", type=int, default=0)
    # LoRA
    p.add_argument("--lora-r", type=int, default=None, help="rank, default 64 (smoke: 4)")
    p.add_argument("--lora-alpha", type=float, default=None, help="default 2 x rank")
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--lora-impl", choices=["peft", "course"], default="peft")
    # device and output
    p.add_argument("--device", default=None, help="default cuda (smoke: cpu)")
    p.add_argument("--memory-fraction", type=float, default=None,
                   help="cap this process's share of GPU memory (emulate a smaller GPU)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="dense bf16 peak of the device, if not in PEAK_BF16_TFLOPS")
    p.add_argument("--keep-going", action="store_true",
                   help="still try larger sizes of a method after one did not fit")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = p.parse_args(argv)
    smoke = args.smoke
    args.sizes = (args.sizes or ("tiny-a,tiny-b" if smoke else ",".join(QWEN25))).split(",")
    args.methods = args.methods.split(",")
    for size in args.sizes:
        if size not in SIZES:
            p.error(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    for method in args.methods:
        if method not in ("full", "lora"):
            p.error(f"unknown method {method!r}; choose full or lora")
    defaults = dict(batch_size=(2, 2), seq_len=(32, 2048), steps=(2, 5), warmup=(1, 2),
                    lora_r=(4, 64))
    for name, (small, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if smoke else full)
    args.lora_alpha = args.lora_alpha or 2.0 * args.lora_r
    args.device = args.device or ("cpu" if smoke else "cuda")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or use --smoke (CPU)")
    # bf16 on the GPU; fp32 on a CPU (most CPUs run bf16 matmuls many times slower)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda" and args.memory_fraction:
        torch.cuda.set_per_process_memory_fraction(args.memory_fraction, device)
    info = device_info(device)
    print(f"device: {info['name']}  dtype: {dtype}  sizes: {args.sizes}  methods: {args.methods}")
    threads = torch.get_num_threads()
    if args.smoke and device.type == "cpu":
        torch.set_num_threads(1)  # toy matmuls: extra threads only wait on a busy machine
    try:
        results = run_all(args, device, dtype)
    finally:
        torch.set_num_threads(threads)
    report = {
        "device": info, "date": date.today().isoformat(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.gpu_lora_efficiency",
                             *(argv if argv is not None else sys.argv[1:])]),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "dtype": str(dtype).removeprefix("torch."),
        "peak_bf16_flops": peak_flops(device, args.peak_tflops),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "configs": {s: SIZES[s] for s in args.sizes},
        "results": results,
        "largest_fitting": largest_fitting(results, args.methods),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu_lora_efficiency_{slug(info['name'])}_{report['date']}"
    json_path = args.out / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    png = plot(report, args.out / f"{stem}.png")
    print(f"largest size that fits: {report['largest_fitting']}")
    print(f"wrote {json_path}" + (f" and {png}" if png else " (no matplotlib: no plot)"))
    return report


if __name__ == "__main__":
    main()
