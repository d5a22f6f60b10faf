"""Full-parameter fine-tuning vs LoRA on the same data and step budget, plus a LoRA rank sweep.

    from course.full_vs_lora import compare, default_config
    result = compare(lora=ex, masking=masking_module)     # ex: a step 4 lora_exercise module
    print(result.table())

The modules are passed in, never imported here: the notebook passes the learner's `lora_exercise`,
`make demo` and `make bench-lora` pass the answer keys (benchmarks/full_vs_lora.py). Each run:

1. loads the base model on `course.device.pick_device()` (CUDA when present) in `pick_dtype`;
2. full: every parameter trains; lora: `lora.inject_lora(model, targets, r, alpha=2r)`;
3. trains `steps` AdamW steps on the very same batches (labels and padding by step 2's
   `labels_for_conversation` / `collate`) with step 3's hand-written loop (`sft.train`, or the
   🤗 Trainer when no step 3 module is given), each method at its own learning rate
   (`Config.lr_for`), logging the training loss every step and the validation loss every
   `eval_every` steps;
4. saves a checkpoint (full: `save_pretrained`, LoRA: `lora.save_adapter`) and measures it;
5. LoRA is merged (`lora.merge_and_unload`) and both are scored on the same held-out test
   conversations: exact match and the loss per answer token (`test_loss`), and on plain
   held-out stories, the base model's kind of text (`story_loss`: forgetting).

Settings: one typed dataclass, `Config`. Measurement (memory accounting, peak memory, step
time): `course.measure`. Figures: `course.plots.full_vs_lora_figures`. The table's "peak mem."
column is `torch.cuda.max_memory_allocated()` on CUDA, the accounted total elsewhere (its
footnote says which).
"""
from __future__ import annotations

import json
import math
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from course.data import load_split
from course.device import pick_device, pick_dtype, seed_everything
from course.evaluate import exact_match
from course.measure import (Batch, PeakMemory, StepTimer, activation_bytes, checkpoint_bytes,
                            mean_token_loss, median_step_seconds, no_progress_bars,
                            optimizer_state_bytes, state_bytes, tensor_bytes)
from course.models import load_base_model, load_tokenizer


# --- settings ------------------------------------------------------------------------------------
@dataclass
class Config:
    """Every setting of one comparison: the data, the budget, each method's learning rate."""

    steps: int = 120                # optimizer steps per run (the same for every run)
    batch_size: int = 16            # conversations per step
    max_length: int = 256           # tokens kept per conversation
    full_lr: float = 2e-3           # full fine-tuning
    lora_lr: float = 5e-3           # LoRA, every rank unless lora_lr_by_rank names it
    lora_lr_by_rank: dict[int, float] = field(default_factory=dict)  # {r: lr}, tuned per rank
    r: int = 8                      # the main LoRA run
    alpha_per_rank: float = 2.0     # alpha = 2 r: scaling alpha / r = 2 at every rank
    targets: str | list[str] = "all-linear"
    ranks: tuple[int, ...] = (1, 4, 8, 32)  # the rank sweep (8 reuses the main run; (): none)
    warmup: int = 5
    eval_every: int = 15            # validation loss every n steps (and at the end)
    n_val: int = 64                 # validation conversations for the loss curve
    n_test: int = 200               # held-out test conversations: exact match and test loss
    n_stories: int = 128            # plain held-out stories: forgetting (0: not measured)
    seed: int = 0
    threads: int | None = None      # torch CPU threads (None: leave as is)

    def lr_for(self, method: str, r: int | None = None) -> float:
        """full_lr; for LoRA, lora_lr at the main rank `r`, lora_lr_by_rank at the others (where
        it names them), else lora_lr."""
        if method == "full":
            return self.full_lr
        if r is None or r == self.r:
            return self.lora_lr
        return self.lora_lr_by_rank.get(r, self.lora_lr)

    def label(self) -> str:
        return (f"{self.steps} steps x {self.batch_size} conversations, full lr {self.full_lr:g},"
                f" LoRA r={self.r} alpha={self.alpha_per_rank * self.r:g} lr "
                f"{self.lr_for('lora', self.r):g}")

    @classmethod
    def from_json(cls, data: dict) -> "Config":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "ranks" in known:
            known["ranks"] = tuple(known["ranks"])
        if "lora_lr_by_rank" in known:
            known["lora_lr_by_rank"] = {int(k): v for k, v in known["lora_lr_by_rank"].items()}
        return cls(**known)


# The rates used by default: each method at the rate tuned for it on validation exact match by
# `make bench-lora-tuning` (benchmarks/results/full_vs_lora_tuning.json; a test checks they
# agree).
TUNED_FULL_LR = 5e-4
TUNED_LORA_LR = 1e-2                                     # r = 8
TUNED_LORA_LR_BY_RANK = {1: 2e-2, 4: 5e-3, 8: 1e-2, 32: 5e-3}


def default_config(device: torch.device | None = None, **overrides) -> Config:
    """The CPU budget (a few minutes on 2 cores), or a longer one on a CUDA GPU; each method at
    its tuned learning rate."""
    device = device or pick_device()
    config = Config(full_lr=TUNED_FULL_LR, lora_lr=TUNED_LORA_LR,
                    lora_lr_by_rank=dict(TUNED_LORA_LR_BY_RANK))
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


# --- held-out text: forgetting -----------------------------------------------------------------
def story_batches(tokenizer, n: int, device: torch.device, batch_size: int = 32,
                  seed: int = 0) -> list[Batch]:
    """`n` plain stories about held-out names (the base model's pretraining kind of text, never
    seen), as padded batches with every token trained: the loss on them before and after
    fine-tuning measures forgetting."""
    from course.build.make_data import SEED, name_pools, pretraining_documents

    _, heldout = name_pools(SEED)
    docs = pretraining_documents(n, heldout, SEED + 7 + seed, qa_fraction=0.0)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    batches = []
    for i in range(0, n, batch_size):
        ids = [t + [eot] for t in tokenizer(docs[i:i + batch_size],
                                            add_special_tokens=False)["input_ids"]]
        width = max(map(len, ids))
        input_ids = torch.full((len(ids), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, t in enumerate(ids):
            input_ids[row, :len(t)] = torch.tensor(t)
            mask[row, :len(t)] = 1
        batches.append({"input_ids": input_ids.to(device), "attention_mask": mask.to(device),
                        "labels": input_ids.masked_fill(mask == 0, -100).to(device)})
    return batches


# --- the training loop ---------------------------------------------------------------------------
@dataclass
class Data:
    """What every run of one comparison shares."""

    tokenizer: object
    masking: ModuleType
    device: torch.device
    dtype: torch.dtype
    train: list[dict]                 # encoded training examples
    val: list[dict]                   # encoded validation examples (the loss curve)
    test: object                      # test records (exact match)
    test_examples: list[dict]         # the same test conversations, encoded (test loss)
    largest_batch: Batch              # activations are counted on it
    stories: list[Batch]              # plain held-out stories (forgetting)

    def batches(self, examples: Sequence[dict], size: int = 32) -> list[Batch]:
        pad = self.tokenizer.pad_token_id
        return [{k: v.to(self.device) for k, v in self.masking.collate(
            list(examples[i:i + size]), pad).items()} for i in range(0, len(examples), size)]


# train(model, data, config, lr=, output_dir=, name=, progress=) -> {"train_loss": [(step, loss)],
#     "val_loss": [(step, loss)], "step_seconds": [...], "optimizer_bytes": int}
TrainFn = Callable[..., dict]


def sft_loop(sft: ModuleType) -> TrainFn:
    """Step 3's hand-written loop (`sft.train`, the learner's or the answer key) as a TrainFn.
    Optimizer state is read back from the checkpoint it writes at the end."""

    def train(model: torch.nn.Module, data: Data, config: Config, *, lr: float,
              output_dir: Path, name: str = "train", progress: bool = True) -> dict:
        conf = sft.FinetuneConfig(
            learning_rate=lr, max_steps=config.steps, batch_size=config.batch_size,
            warmup_steps=config.warmup, weight_decay=0.0, max_length=config.max_length,
            eval_every=config.eval_every, log_every=1, seed=config.seed,
            output_dir=str(output_dir))
        timer = StepTimer(data.device)
        timer.start()
        result = sft.train(model, data.tokenizer, data.train, data.val, conf,
                           progress=progress, on_step=timer.tick)
        state = sft.read_checkpoint(Path(output_dir) / sft.CHECKPOINT)["optimizer"]["state"]
        return {"train_loss": [(r["step"], r["loss"]) for r in result.train],
                "val_loss": [(r["step"], r["loss"]) for r in result.evals],
                "step_seconds": timer.seconds, "optimizer_bytes": state_bytes(state)}

    train.__name__ = f"{sft.__name__}.train"
    return train


class _InOrder(torch.utils.data.IterableDataset):
    """Ready-made batches, yielded in order: an iterable dataset has no sampler to shuffle it."""

    def __init__(self, batches: Sequence[Batch]):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def train_with_trainer(model: torch.nn.Module, data: Data, config: Config, *, lr: float,
                       output_dir: Path, name: str = "train", progress: bool = True) -> dict:
    """The library way: 🤗 `Trainer`, one ready-made batch per step (the same seeded order as
    `make_batches`), used when no step 3 module is given. Public API only: the batches come in
    order from an iterable dataset, the measurements from a callback."""
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    train_batches = make_batches(data.train, config.batch_size, config.steps,
                                 data.tokenizer.pad_token_id, data.masking, config.seed)
    val_batches = data.batches(data.val)
    history: dict = {"train_loss": [], "val_loss": [(0, mean_token_loss(model, val_batches))]}
    timer = StepTimer(data.device)
    bar = tqdm(total=len(train_batches), desc=name, disable=not progress)

    class Monitor(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            timer.start()

        def on_step_end(self, args, state, control, **kw):
            timer.tick()
            step = state.global_step
            if step % config.eval_every == 0 or step == args.max_steps:
                history["val_loss"].append((step, mean_token_loss(model, val_batches)))
                bar.set_postfix(val_loss=f"{history['val_loss'][-1][1]:.3f}")
            bar.update(1)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                history["train_loss"].append((state.global_step, float(logs["loss"])))

    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=len(train_batches),
        per_device_train_batch_size=1, learning_rate=lr, lr_scheduler_type="cosine",
        warmup_steps=config.warmup, weight_decay=0.0, max_grad_norm=1.0, logging_steps=1,
        save_strategy="no", report_to="none", seed=config.seed, dataloader_num_workers=0,
        remove_unused_columns=False, use_cpu=data.device.type == "cpu",
        disable_tqdm=True, logging_first_step=True)
    trainer = Trainer(model=model, args=args, train_dataset=_InOrder(train_batches),
                      data_collator=lambda items: items[0], callbacks=[Monitor()])
    for quiet in (PrinterCallback, ProgressCallback):  # our own bar instead of a dict per step
        trainer.remove_callback(quiet)
    try:
        trainer.train()
    finally:
        bar.close()
    history["step_seconds"] = timer.seconds
    history["optimizer_bytes"] = optimizer_state_bytes(trainer.optimizer)
    return history


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
    test_loss: float | None = None    # loss per answer token on the exact-match conversations
    story_loss: float | None = None   # loss per token on plain held-out stories (forgetting)
    seed: int = 0

    @property
    def final_val_loss(self) -> float | None:
        return self.val_loss[-1][1] if self.val_loss else None


def run_one(method: str, config: Config, lora: ModuleType | None, data: Data,
            train: TrainFn, r: int | None = None, evaluate: bool = True,
            progress: bool = True) -> Run:
    """Fine-tune a fresh base model with `method` ("full" or "lora", rank `r`) on data.train;
    measure; evaluate on data.test (exact match, test loss) and data.stories when `evaluate`."""
    seed_everything(config.seed)
    with no_progress_bars():
        model = load_base_model(device=data.device, dtype=data.dtype)
    if method == "lora":
        r = r or config.r
        lora.inject_lora(model, config.targets, r=r, alpha=config.alpha_per_rank * r)
        name = f"LoRA r={r}"
    elif method == "full":
        name, r = "full fine-tuning", None
    else:
        raise ValueError(f"method must be 'full' or 'lora', got {method!r}")
    lr = config.lr_for(method, r)
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    n_total = sum(p.numel() for p in {id(p): p for p in params}.values())
    n_trainable = sum(p.numel() for p in {id(p): p for p in trainable}.values())
    act = activation_bytes(model, data.largest_batch)
    model.zero_grad(set_to_none=True)

    with tempfile.TemporaryDirectory(prefix="full-vs-lora-") as tmp:
        start = time.perf_counter()
        with PeakMemory(data.device) as peak:
            history = train(model, data, config, lr=lr, output_dir=Path(tmp) / "run",
                            name=name, progress=progress)
        train_seconds = time.perf_counter() - start
        opt_bytes = history["optimizer_bytes"]
        out = Path(tmp) / "checkpoint"
        if method == "lora":
            lora.save_adapter(model, out)
        else:
            with no_progress_bars():
                model.save_pretrained(out)
        ckpt = checkpoint_bytes(out)

    weights = tensor_bytes(params)
    grads = tensor_bytes(trainable)
    memory = {"accounted": {"weights": weights, "grads": grads, "optimizer": opt_bytes,
                            "activations": act, "total": weights + grads + opt_bytes + act},
              "measured": {"bytes": peak.bytes, "how": peak.how,
                           "max_memory_allocated": peak.peak}}
    result = Run(name=name, method=method, r=r, lr=lr, trainable=n_trainable, total=n_total,
                 optimizer_bytes=opt_bytes, checkpoint_bytes=ckpt, memory=memory,
                 step_seconds=median_step_seconds(history["step_seconds"]),
                 train_seconds=train_seconds, train_loss=history["train_loss"],
                 val_loss=history["val_loss"], seed=config.seed)
    if evaluate:
        if method == "lora":
            lora.merge_and_unload(model)
        em = exact_match(model, data.tokenizer, data.test, progress=progress)
        result.exact_match, result.per_task = em.score, em.per_task
        result.test_loss = mean_token_loss(model, data.batches(data.test_examples))
        if data.stories:
            result.story_loss = mean_token_loss(model, data.stories)
    del model
    if data.device.type == "cuda":
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
    base: dict = field(default_factory=dict)  # the base model: test_loss, story_loss

    def table(self) -> str:
        """The summary table: one row per run (full, LoRA), then the rank sweep."""
        head = (f"{'run':18s} {'lr':>7s} {'trainable':>10s} {'optim. state':>12s} "
                f"{'checkpoint':>10s} {'peak mem.*':>10s} {'step':>7s} {'val loss':>8s} "
                f"{'test loss':>9s} {'stories':>7s} {'exact match':>11s}")
        rows = [head, "-" * len(head)]
        for run in self.runs + [s for s in self.sweep if s.r != self._main_r()]:
            rows.append(
                f"{run.name:18s} {run.lr:7.0e} {_count(run.trainable):>10s} "
                f"{_size(run.optimizer_bytes):>12s} {_size(run.checkpoint_bytes):>10s} "
                f"{_size(_peak(run)):>10s} "
                f"{run.step_seconds * 1000:5.0f}ms {_num(run.final_val_loss):>8s} "
                f"{_num(run.test_loss):>9s} {_num(run.story_loss):>7s} "
                f"{_pct(run.exact_match):>11s}")
        measured = any(r.memory["measured"].get("max_memory_allocated") for r in self.runs)
        rows.append(f"base model (no fine-tuning): exact match {_pct(self.base_exact_match)}, "
                    f"test loss {_num(self.base.get('test_loss'))}, stories "
                    f"{_num(self.base.get('story_loss'))}. "
                    + ("* torch.cuda.max_memory_allocated() during training" if measured else
                       "* weights + grads + optimizer state + activations, counted tensor by "
                       "tensor"))
        return "\n".join(rows)

    def _main_r(self) -> int | None:
        return next((run.r for run in self.runs if run.method == "lora"), None)

    def to_json(self) -> dict:
        return {"config": self.config, "device": self.device, "dtype": self.dtype,
                "base_exact_match": self.base_exact_match, "base": self.base,
                "seconds": self.seconds, "meta": self.meta,
                "runs": [asdict(r) for r in self.runs], "sweep": [asdict(r) for r in self.sweep]}

    @classmethod
    def from_json(cls, data: dict) -> "Comparison":
        fields = Run.__dataclass_fields__
        return cls(config=data["config"], device=data["device"], dtype=data["dtype"],
                   base_exact_match=data["base_exact_match"], seconds=data["seconds"],
                   meta=data.get("meta", {}), base=data.get("base", {}),
                   runs=[Run(**{k: v for k, v in r.items() if k in fields})
                         for r in data["runs"]],
                   sweep=[Run(**{k: v for k, v in r.items() if k in fields})
                          for r in data["sweep"]])


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


def prepare(config: Config, masking: ModuleType, device: torch.device | None = None) -> Data:
    """Tokenizer, training, validation and test examples, held-out stories: shared by every
    run."""
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
    test = load_split("test").select(range(min(config.n_test, 1000)))
    longest = sorted(examples, key=lambda e: len(e["input_ids"]))[-config.batch_size:]
    largest = {k: v.to(device) for k, v in masking.collate(longest,
                                                            tokenizer.pad_token_id).items()}
    stories = story_batches(tokenizer, config.n_stories, device) if config.n_stories else []
    return Data(tokenizer=tokenizer, masking=masking, device=device, dtype=pick_dtype(device),
                train=examples, val=val, test=test,
                test_examples=encode(list(test["messages"]), tokenizer, masking,
                                     config.max_length),
                largest_batch=largest, stories=stories)


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
        base_em, base_losses = None, {}
        if base:
            with no_progress_bars():
                model = load_base_model(device=device, dtype=data.dtype)
            base_em = exact_match(model, data.tokenizer, data.test, progress=progress).score
            base_losses = {"test_loss": mean_token_loss(model, data.batches(data.test_examples)),
                           "story_loss": (mean_token_loss(model, data.stories)
                                          if data.stories else None)}
            del model
        runs = [run_one("full", config, lora, data, train, progress=progress),
                run_one("lora", config, lora, data, train, r=config.r, progress=progress)]
        sweep = []
        for r in tqdm(config.ranks, desc="rank sweep", disable=not progress):
            sweep.append(runs[1] if r == config.r else
                         run_one("lora", config, lora, data, train, r=r, progress=False))
    finally:
        torch.set_num_threads(threads)
    return Comparison(config=asdict(config), device=str(device), dtype=str(data.dtype),
                      base_exact_match=base_em, runs=runs, sweep=sweep,
                      seconds=time.perf_counter() - start, meta=meta, base=base_losses)


def _meta(device: torch.device, train: TrainFn) -> dict:
    import os
    import platform
    from datetime import date

    from course.models import EMBEDDED_MODEL_DIR, resolve_model_name

    info = {"date": date.today().isoformat(), "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "model": resolve_model_name(),
            "train_loop": train.__name__, "load_1min": round(os.getloadavg()[0], 2)}
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
def save(result: Comparison, folder: str | Path, prefix: str | None = None) -> dict[str, Path]:
    """Write <prefix>.json and <prefix>_{curves,ranks,costs}.png into `folder` (prefix:
    full_vs_lora_<device type>). Returns {"json": path, "curves": path, ...}."""
    import matplotlib.pyplot as plt

    from course.plots import full_vs_lora_figures

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = prefix or f"full_vs_lora_{torch.device(result.device).type}"
    paths = {"json": folder / f"{prefix}.json"}
    paths["json"].write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
    for key, fig in full_vs_lora_figures(result).items():
        paths[key] = folder / f"{prefix}_{key}.png"
        fig.savefig(paths[key], dpi=110)
        plt.close(fig)
    return paths


def load(path: str | Path) -> Comparison:
    """A Comparison written by `save` (e.g. the committed GPU results)."""
    return Comparison.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
