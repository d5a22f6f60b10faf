"""Full-parameter fine-tuning vs LoRA on the same data and step budget, plus a LoRA rank sweep.

    from course.full_vs_lora import compare, default_config
    result = compare(lora=ex, masking=masking_reference)     # ex: a step 4 lora_exercise module
    print(result.table())

The modules are passed in, never imported here: the notebook passes the learner's `lora_exercise`
and the reference copies beside it, `make demo` and `make bench-lora` pass the answer keys
(benchmarks/full_vs_lora.py). Each run:

1. loads the base model on `course.device.pick_device()` (CUDA when present) in `pick_dtype`;
2. full: every parameter trains; lora: `lora.inject_lora(model, targets, r, alpha=2r)`;
3. trains `steps` AdamW steps on the very same batches (labels and padding by step 2's
   `labels_for_conversation` / `collate`) with step 3's hand-written loop (`sft.train`, or the
   🤗 Trainer when no step 3 module is given), each run with its own learning rate, logging the
   training loss every step and the validation loss every `eval_every` steps;
4. saves a checkpoint (full: `save_pretrained`, LoRA: `lora.save_adapter`) and measures it;
5. LoRA is merged (`lora.merge_and_unload`) and both are scored by held-out exact match.

Memory is reported two ways (`Run.memory`):
- `accounted`: bytes of the tensors training needs, counted exactly: weights (every parameter),
  gradients (trainable ones), optimizer state (the tensors AdamW keeps, read from the optimizer
  after training) and activations (bytes autograd saves for backward in one forward pass of the
  largest batch, seen through `torch.autograd.graph.saved_tensors_hooks`). Device-independent.
- `measured`: on CUDA, `torch.cuda.max_memory_allocated()` during training minus the memory
  allocated before it (the model's weights); on Linux CPUs, the growth of the process's peak
  resident memory (VmHWM, reset through /proc/self/clear_refs after `malloc_trim`) during
  training — allocator caching makes this coarse, so read it as an order of magnitude.
Step time: median wall-clock time between consecutive optimizer steps, the first left out
(CUDA synchronised; the median also leaves out the steps that ran a validation pass). The
table's "peak mem." column is `torch.cuda.max_memory_allocated()` on CUDA, the accounted total
elsewhere (its footnote says which).
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import random
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from course.data import load_split
from course.device import pick_device, pick_dtype, seed_everything
from course.evaluate import exact_match
from course.models import load_base_model, load_tokenizer

Batch = dict[str, torch.Tensor]
# train(model, train_examples, val_examples, cfg) -> {"train_loss": [(step, loss)],
#     "val_loss": [(step, loss)], "step_seconds": [...], "optimizer_bytes": int}
TrainFn = Callable[..., dict]


# --- settings ------------------------------------------------------------------------------------
@dataclass
class Config:
    """One comparison: the data, the budget, and each method's learning rate."""

    steps: int = 120                # optimizer steps per run (the same for every run)
    batch_size: int = 16            # conversations per step
    max_length: int = 256           # tokens kept per conversation
    full_lr: float = 2e-3           # full fine-tuning
    lora_lr: float = 5e-3           # LoRA: higher (measured here: 1e-3 too slow, 3e-2 unstable)
    r: int = 8                      # the main LoRA run
    alpha_per_rank: float = 2.0     # alpha = 2 r (seed 004: r 64, alpha 128): scaling 2
    targets: str | list[str] = "all-linear"
    ranks: tuple[int, ...] = (1, 4, 8, 32)  # the rank sweep (8 reuses the main run; (): none)
    warmup: int = 5
    eval_every: int = 15            # validation loss every n steps (and at the end)
    n_val: int = 64                 # validation conversations for the loss curve
    n_test: int = 200               # held-out test conversations for exact match
    seed: int = 0
    threads: int | None = None      # torch CPU threads (None: leave as is)

    def label(self) -> str:
        return (f"{self.steps} steps x {self.batch_size} conversations, full lr {self.full_lr:g},"
                f" LoRA r={self.r} alpha={self.alpha_per_rank * self.r:g} lr {self.lora_lr:g}")


def default_config(device: torch.device | None = None, **overrides) -> Config:
    """The CPU budget (about 4 minutes on 2 cores), or a longer one on a CUDA GPU."""
    device = device or pick_device()
    config = Config()
    if device.type == "cuda":
        config = replace(config, steps=400, batch_size=32, eval_every=50, n_val=200,
                         n_test=1000)
    return replace(config, **overrides)


# --- data ----------------------------------------------------------------------------------------
def encode(conversations: Sequence[list[dict]], tokenizer, masking: ModuleType,
           max_length: int) -> list[dict]:
    """Token ids and assistant-only labels of each conversation (step 2's
    `labels_for_conversation`), cut to `max_length`; conversations left without a label are
    dropped (`truncate_and_filter`)."""
    examples = [masking.labels_for_conversation(m, tokenizer) for m in conversations]
    kept, _ = masking.truncate_and_filter(examples, max_length)
    return kept


def make_batches(examples: Sequence[dict], batch_size: int, n_batches: int, pad_id: int,
                 masking: ModuleType, seed: int) -> list[Batch]:
    """`n_batches` padded batches (step 2's `collate`), examples drawn in a seeded random order
    (reshuffled after each pass over the data)."""
    if not examples:
        raise ValueError("no training example left: every conversation lost its answer to "
                         "truncation (raise max_length)")
    rng = random.Random(seed)
    order: list[int] = []
    batches = []
    for _ in range(n_batches):
        while len(order) < batch_size:
            more = list(range(len(examples)))
            rng.shuffle(more)
            order += more
        picked, order = order[:batch_size], order[batch_size:]
        batches.append(masking.collate([examples[i] for i in picked], pad_id))
    return batches


# --- measuring -----------------------------------------------------------------------------------
def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of distinct tensors (a tensor listed twice, e.g. tied weights, counts once)."""
    seen = {}
    for t in tensors:
        seen.setdefault(id(t), t.numel() * t.element_size())
    return sum(seen.values())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors the optimizer keeps per parameter (AdamW: exp_avg, exp_avg_sq)."""
    return tensor_bytes(v for state in optimizer.state.values() for v in state.values()
                        if torch.is_tensor(v) and v.dim() > 0)


def activation_bytes(model: torch.nn.Module, batch: Batch) -> int:
    """Bytes autograd saves for backward during one forward pass with `batch` (each storage
    once; parameters, which are there anyway, not counted)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    was_training = model.training
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
    del loss
    model.train(was_training)
    return sum(saved.values())


@contextlib.contextmanager
def _no_progress_bars():
    from transformers.utils import logging as hf_logging
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def checkpoint_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


class PeakMemory:
    """Peak memory growth during a block: CUDA allocator peak, or the process's peak RSS on
    Linux (see the module docstring). `.bytes` is None where neither can be read."""

    def __init__(self, device: torch.device):
        self.device, self.bytes, self.how = device, None, "unavailable"
        self.peak = None  # CUDA: torch.cuda.max_memory_allocated() itself (weights included)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            self.start = _reset_peak_rss()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            self.bytes = self.peak - self.start
            self.how = "torch.cuda.max_memory_allocated growth"
        elif self.start is not None:
            peak = _status_kib("VmHWM")
            self.bytes = None if peak is None else max(0, peak * 1024 - self.start)
            self.how = "peak RSS growth (VmHWM)"


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> int | None:
    """Give freed heap back to the OS, reset the peak RSS to the current RSS; return it (bytes)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    rss = _status_kib("VmRSS")
    return None if rss is None else rss * 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def validation_loss(model: torch.nn.Module, batches: Sequence[Batch]) -> float:
    """Mean cross-entropy per trained token over `batches` (model left in its mode)."""
    was_training = model.training
    model.eval()
    total = tokens = 0.0
    for batch in batches:
        n = (batch["labels"][:, 1:] != -100).sum().item()
        total += model(**batch).loss.float().item() * n
        tokens += n
    model.train(was_training)
    return total / max(tokens, 1)


# --- the training loop ---------------------------------------------------------------------------
def sft_loop(sft: ModuleType) -> TrainFn:
    """Step 3's hand-written loop (`sft.train`, e.g. the reference copy `sft_reference`) as a
    TrainFn. Optimizer state is read back from the checkpoint it writes at the end."""

    def train(model: torch.nn.Module, train_examples: Sequence[dict],
              val_examples: Sequence[dict], cfg: dict) -> dict:
        conf = sft.FinetuneConfig(
            learning_rate=cfg["lr"], max_steps=cfg["steps"], batch_size=cfg["batch_size"],
            warmup_steps=cfg["warmup"], weight_decay=0.0, max_length=cfg["max_length"],
            eval_every=cfg["eval_every"], log_every=1, seed=cfg["seed"],
            output_dir=cfg["output_dir"])
        device = next(model.parameters()).device
        ticks: list[float] = []

        def on_step(step: int, stats: dict) -> None:
            _sync(device)
            ticks.append(time.perf_counter())

        _sync(device)
        ticks.append(time.perf_counter())
        result = sft.train(model, cfg["tokenizer"], train_examples, val_examples, conf,
                           progress=cfg.get("progress", True), on_step=on_step)
        state = sft.read_checkpoint(Path(cfg["output_dir"]) / sft.CHECKPOINT)["optimizer"]
        return {"train_loss": [(r["step"], r["loss"]) for r in result.train],
                "val_loss": [(r["step"], r["loss"]) for r in result.evals],
                "step_seconds": [b - a for a, b in zip(ticks, ticks[1:])],
                "optimizer_bytes": tensor_bytes(v for st in state["state"].values()
                                                for v in st.values()
                                                if torch.is_tensor(v) and v.dim() > 0)}

    train.__name__ = f"{sft.__name__}.train"
    return train


def train_with_trainer(model: torch.nn.Module, train_examples: Sequence[dict],
                       val_examples: Sequence[dict], cfg: dict) -> dict:
    """The library way: 🤗 `Trainer`, one ready-made batch per step (the same seeded order as
    `make_batches`), used when no step 3 module is given."""
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    device = next(model.parameters()).device
    pad, masking = cfg["tokenizer"].pad_token_id, cfg["masking"]
    train_batches = make_batches(train_examples, cfg["batch_size"], cfg["steps"], pad, masking,
                                 cfg["seed"])
    val_batches = [{k: v.to(device) for k, v in masking.collate(val_examples[i:i + 32],
                                                                  pad).items()}
                   for i in range(0, len(val_examples), 32)]
    history: dict = {"train_loss": [], "val_loss": [(0, validation_loss(model, val_batches))],
                     "step_seconds": []}
    bar = tqdm(total=len(train_batches), desc=cfg.get("name", "train"),
               disable=not cfg.get("progress", True))

    class Monitor(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            _sync(device)
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            _sync(device)
            history["step_seconds"].append(time.perf_counter() - self.t0)
            step = state.global_step
            if step % cfg["eval_every"] == 0 or step == args.max_steps:
                history["val_loss"].append((step, validation_loss(model, val_batches)))
                bar.set_postfix(val_loss=f"{history['val_loss'][-1][1]:.3f}")
            bar.update(1)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                history["train_loss"].append((state.global_step, float(logs["loss"])))

    args = TrainingArguments(
        output_dir=cfg["output_dir"], max_steps=len(train_batches),
        per_device_train_batch_size=1, learning_rate=cfg["lr"], lr_scheduler_type="cosine",
        warmup_steps=cfg["warmup"], weight_decay=0.0, max_grad_norm=1.0, logging_steps=1,
        save_strategy="no", report_to="none", seed=cfg["seed"], dataloader_num_workers=0,
        remove_unused_columns=False, use_cpu=device.type == "cpu",
        disable_tqdm=True, logging_first_step=True)
    trainer = Trainer(model=model, args=args, train_dataset=_InOrder(train_batches),
                      data_collator=lambda items: items[0], callbacks=[Monitor()])
    for quiet in (PrinterCallback, ProgressCallback):  # our own bar instead of a dict per step
        trainer.remove_callback(quiet)
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(
        trainer.train_dataset)  # the same batches in the same order for every run
    try:
        trainer.train()
    finally:
        bar.close()
    history["optimizer_bytes"] = optimizer_state_bytes(trainer.optimizer)
    return history


class _InOrder(torch.utils.data.Dataset):
    def __init__(self, batches: Sequence[Batch]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Batch:
        return self.batches[i]


# --- one run -------------------------------------------------------------------------------------
@dataclass
class Run:
    """What one fine-tuning run cost and achieved."""

    name: str
    method: str                       # "full" or "lora"
    r: int | None
    lr: float
    trainable: int
    total: int
    optimizer_bytes: int
    checkpoint_bytes: int
    memory: dict                      # accounted (weights, grads, optimizer, activations, total)
                                      # and measured (bytes, how)
    step_seconds: float               # median over steps, the first excluded
    train_seconds: float
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    exact_match: float | None = None
    per_task: dict = field(default_factory=dict)

    @property
    def final_val_loss(self) -> float | None:
        return self.val_loss[-1][1] if self.val_loss else None


def run_one(method: str, config: Config, lora: ModuleType | None, data: dict,
            train: TrainFn, r: int | None = None, evaluate: bool = True,
            progress: bool = True) -> Run:
    """Fine-tune a fresh base model with `method` ("full" or "lora", rank `r`) on
    data["train"] examples; measure; evaluate on data["test"] (exact match) when `evaluate`."""
    device, dtype = data["device"], data["dtype"]
    seed_everything(config.seed)
    with _no_progress_bars():
        model = load_base_model(device=device, dtype=dtype)
    if method == "lora":
        r = r or config.r
        lora.inject_lora(model, config.targets, r=r, alpha=config.alpha_per_rank * r)
        lr, name = config.lora_lr, f"LoRA r={r}"
    elif method == "full":
        lr, name, r = config.full_lr, "full fine-tuning", None
    else:
        raise ValueError(f"method must be 'full' or 'lora', got {method!r}")
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    n_total = sum(p.numel() for p in {id(p): p for p in params}.values())
    n_trainable = sum(p.numel() for p in {id(p): p for p in trainable}.values())
    act = activation_bytes(model, data["largest_batch"])
    model.zero_grad(set_to_none=True)

    with tempfile.TemporaryDirectory(prefix="full-vs-lora-") as tmp:
        cfg = {"lr": lr, "steps": config.steps, "batch_size": config.batch_size,
               "max_length": config.max_length, "warmup": config.warmup, "seed": config.seed,
               "eval_every": config.eval_every, "tokenizer": data["tokenizer"],
               "masking": data["masking"], "progress": progress, "name": name,
               "output_dir": str(Path(tmp) / "run")}
        start = time.perf_counter()
        with PeakMemory(device) as peak:
            history = train(model, data["train"], data["val"], cfg)
        train_seconds = time.perf_counter() - start
        opt_bytes = history["optimizer_bytes"]
        out = Path(tmp) / "checkpoint"
        if method == "lora":
            lora.save_adapter(model, out)
        else:
            with _no_progress_bars():
                model.save_pretrained(out)
        ckpt = checkpoint_bytes(out)

    weights = tensor_bytes(params)
    grads = tensor_bytes(trainable)
    memory = {"accounted": {"weights": weights, "grads": grads, "optimizer": opt_bytes,
                            "activations": act, "total": weights + grads + opt_bytes + act},
              "measured": {"bytes": peak.bytes, "how": peak.how,
                           "max_memory_allocated": peak.peak}}
    times = history["step_seconds"][1:] or history["step_seconds"]  # step 1: allocation, warm-up
    result = Run(name=name, method=method, r=r, lr=lr, trainable=n_trainable, total=n_total,
                 optimizer_bytes=opt_bytes, checkpoint_bytes=ckpt, memory=memory,
                 step_seconds=statistics.median(times), train_seconds=train_seconds,
                 train_loss=history["train_loss"], val_loss=history["val_loss"])
    if evaluate:
        if method == "lora":
            lora.merge_and_unload(model)
        em = exact_match(model, data["tokenizer"], data["test"], progress=progress)
        result.exact_match, result.per_task = em.score, em.per_task
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


# --- the comparison ------------------------------------------------------------------------------
@dataclass
class Comparison:
    config: dict
    device: str
    dtype: str
    base_exact_match: float | None
    runs: list[Run]
    sweep: list[Run]
    seconds: float
    meta: dict = field(default_factory=dict)  # date, machine, torch, threads, base model

    def table(self) -> str:
        """The summary table: one row per run (full, LoRA), then the rank sweep."""
        head = (f"{'run':18s} {'lr':>7s} {'trainable':>10s} {'optim. state':>12s} "
                f"{'checkpoint':>10s} {'peak mem.*':>10s} {'step':>7s} {'val loss':>8s} "
                f"{'exact match':>11s}")
        rows = [head, "-" * len(head)]
        for run in self.runs + [s for s in self.sweep if s.r != self._main_r()]:
            rows.append(
                f"{run.name:18s} {run.lr:7.0e} {_count(run.trainable):>10s} "
                f"{_size(run.optimizer_bytes):>12s} {_size(run.checkpoint_bytes):>10s} "
                f"{_size(_peak(run)):>10s} "
                f"{run.step_seconds * 1000:5.0f}ms {_num(run.final_val_loss):>8s} "
                f"{_pct(run.exact_match):>11s}")
        measured = any(r.memory["measured"].get("max_memory_allocated") for r in self.runs)
        rows.append(f"base model (no fine-tuning): exact match {_pct(self.base_exact_match)}. "
                    + ("* torch.cuda.max_memory_allocated() during training" if measured else
                       "* weights + grads + optimizer state + activations, counted tensor by "
                       "tensor"))
        return "\n".join(rows)

    def _main_r(self) -> int | None:
        return next((run.r for run in self.runs if run.method == "lora"), None)

    def to_json(self) -> dict:
        return {"config": self.config, "device": self.device, "dtype": self.dtype,
                "base_exact_match": self.base_exact_match, "seconds": self.seconds,
                "meta": self.meta, "runs": [asdict(r) for r in self.runs], "sweep": [asdict(r) for r in self.sweep]}

    @classmethod
    def from_json(cls, data: dict) -> "Comparison":
        return cls(config=data["config"], device=data["device"], dtype=data["dtype"],
                   base_exact_match=data["base_exact_match"], seconds=data["seconds"],
                   meta=data.get("meta", {}),
                   runs=[Run(**r) for r in data["runs"]], sweep=[Run(**r) for r in data["sweep"]])


def _peak(run: Run) -> int:
    """The measured CUDA peak (max_memory_allocated) when there is one, else the accounted
    total."""
    return run.memory["measured"].get("max_memory_allocated") or run.memory["accounted"]["total"]


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _num(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.3f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def prepare(config: Config, masking: ModuleType, device: torch.device | None = None) -> dict:
    """Tokenizer, training and validation examples and test records, shared by every run."""
    device = device or pick_device()
    tokenizer = load_tokenizer()
    train = list(load_split("train")["messages"])
    random.Random(config.seed).shuffle(train)
    needed = min(len(train), config.steps * config.batch_size)
    examples = encode(train[:needed], tokenizer, masking, config.max_length)
    if len(examples) < config.batch_size:
        raise ValueError(f"{len(examples)} training examples do not fill one batch of "
                         f"{config.batch_size}: every other conversation lost its answer to "
                         f"truncation (raise max_length={config.max_length})")
    val = encode(list(load_split("validation")["messages"])[:config.n_val], tokenizer, masking,
                 config.max_length)
    longest = sorted(examples, key=lambda e: len(e["input_ids"]))[-config.batch_size:]
    largest = {k: v.to(device) for k, v in masking.collate(longest,
                                                            tokenizer.pad_token_id).items()}
    return {"tokenizer": tokenizer, "masking": masking, "device": device,
            "dtype": pick_dtype(device), "train": examples, "val": val,
            "largest_batch": largest,
            "test": load_split("test").select(range(min(config.n_test, 1000)))}


def compare(lora: ModuleType, masking: ModuleType, sft: ModuleType | None = None,
            config: Config | None = None, train: TrainFn | None = None, base: bool = True,
            progress: bool = True, device: torch.device | None = None) -> Comparison:
    """Full fine-tuning vs LoRA (rank config.r), then LoRA at every rank of config.ranks.

    `lora`: a module with inject_lora, save_adapter and merge_and_unload (step 4);
    `masking`: one with labels_for_conversation, truncate_and_filter and collate (step 2);
    `sft`: one with train, FinetuneConfig and read_checkpoint (step 3), whose loop trains;
    without it, `train` (a TrainFn) or else the 🤗 Trainer (`train_with_trainer`).
    `base`: also score the base model, before any fine-tuning."""
    device = device or pick_device()
    config = config or default_config(device)
    train = train or (sft_loop(sft) if sft is not None else train_with_trainer)
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    start = time.perf_counter()
    try:
        meta = _meta(device, train)
        data = prepare(config, masking, device)
        base_em = None
        if base:
            with _no_progress_bars():
                model = load_base_model(device=device, dtype=data["dtype"])
            base_em = exact_match(model, data["tokenizer"], data["test"], progress=progress).score
            del model
        runs = [run_one("full", config, lora, data, train, progress=progress),
                run_one("lora", config, lora, data, train, r=config.r, progress=progress)]
        sweep = []
        for r in tqdm(config.ranks, desc="rank sweep", disable=not progress):
            sweep.append(runs[1] if r == config.r else
                         run_one("lora", config, lora, data, train, r=r, progress=False))
    finally:
        torch.set_num_threads(threads)
    return Comparison(config=asdict(config), device=str(device), dtype=str(data["dtype"]),
                      base_exact_match=base_em, runs=runs, sweep=sweep,
                      seconds=time.perf_counter() - start, meta=meta)


def _meta(device: torch.device, train: TrainFn) -> dict:
    import json
    import platform
    from datetime import date

    from course.models import EMBEDDED_MODEL_DIR, resolve_model_name

    info = {"date": date.today().isoformat(), "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "model": resolve_model_name(),
            "train_loop": train.__name__}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    pretrain = EMBEDDED_MODEL_DIR / "pretrain.json"
    if info["model"] == str(EMBEDDED_MODEL_DIR) and pretrain.exists():
        p = json.loads(pretrain.read_text())
        info["model"] = "embedded"
        info["base_model"] = {k: p.get(k) for k in ("parameters", "validation_loss", "minutes",
                                                    "train_tokens")}
    return info


# --- results on disk -----------------------------------------------------------------------------
def figures(result: Comparison, keys: Sequence[str] = ("curves", "ranks", "costs")) -> dict:
    """The figures named in `keys` ("curves", "ranks" (when there is a sweep), "costs") ->
    matplotlib Figure."""
    from course import plots

    full = next(r for r in result.runs if r.method == "full")
    curves = {r.name: {"train": r.train_loss, "val": r.val_loss} for r in result.runs}
    figs = {}
    if "curves" in keys:
        figs["curves"] = plots.loss_curves(curves, title="Full fine-tuning vs LoRA: loss "
                                           f"({result.device}, same batches)")
    if result.sweep and "ranks" in keys:
        sweep = sorted(result.sweep, key=lambda r: r.r)
        figs["ranks"] = plots.rank_sweep(
            [r.r for r in sweep], [r.trainable for r in sweep],
            [r.exact_match or 0.0 for r in sweep], [r.final_val_loss for r in sweep],
            full=(full.trainable, full.exact_match or 0.0, full.final_val_loss))
    names = [r.name for r in result.runs]
    mib = 2 ** 20
    if "costs" not in keys:
        return figs
    figs["costs"] = plots.cost_bars(names, {
        "trainable parameters": [r.trainable for r in result.runs],
        "optimizer state (MiB)": [r.optimizer_bytes / mib for r in result.runs],
        "checkpoint (MiB)": [r.checkpoint_bytes / mib for r in result.runs],
        "training memory (MiB)": [r.memory["accounted"]["total"] / mib for r in result.runs],
        "step time (ms)": [r.step_seconds * 1000 for r in result.runs]},
        title=f"Full fine-tuning vs LoRA: what each costs ({result.device})")
    return figs


def save(result: Comparison, folder: str | Path, prefix: str | None = None) -> dict[str, Path]:
    """Write <prefix>.json and <prefix>_{curves,ranks,costs}.png into `folder` (prefix:
    full_vs_lora_<device type>). Returns {"json": path, "curves": path, ...}."""
    import json

    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = prefix or f"full_vs_lora_{torch.device(result.device).type}"
    paths = {"json": folder / f"{prefix}.json"}
    paths["json"].write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
    for key, fig in figures(result).items():
        paths[key] = folder / f"{prefix}_{key}.png"
        fig.savefig(paths[key], dpi=110)
        plt.close(fig)
    return paths


def load(path: str | Path) -> Comparison:
    """A Comparison written by `save` (e.g. the committed GPU results)."""
    import json

    return Comparison.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
