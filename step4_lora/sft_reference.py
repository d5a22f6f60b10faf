# Reference copy of solutions/step3_sft/sft_exercise.py, written by `make release`: do not edit.
# It lets this step run without your own step3_sft work.
"""Step 3 exercises: the supervised fine-tuning loop, written by hand.

tutorial.ipynb imports this module and reloads it before every cell (%autoreload), so edit a
function here, save, and re-run the notebook cell that uses it. Each TODO is a function body;
its docstring is the specification that the checks and the grader hold you to.

    cfg = FinetuneConfig(learning_rate=2e-3, max_steps=300, batch_size=16, grad_accum_steps=2)
    result = train(model, tokenizer, train_examples, val_examples, cfg)

One optimizer step ("step") sees `batch_size * grad_accum_steps * world_size` sequences: each
process runs `grad_accum_steps` micro-batches of `batch_size` sequences, and the gradients of
all of them are added up before the optimizer moves. The loss of a step is the mean over every
supervised token of that whole batch, exactly as if it had been one big batch.

The same code runs as several processes (`torchrun --nproc_per_node 2 script.py`, or
`accelerate launch`): each process trains on its share of every batch, and the supervised-token
counts and gradients are summed over processes (`all_reduce_sum`, `all_reduce_gradients`).

Step 2's answer (labels by hand, the collator) comes from `masking_reference.py`, a reference
copy next to this file, so this step works without your own step 2.
"""

import dataclasses
import functools
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

try:
    import masking_reference as masking
except ImportError:  # imported by path (tests, a later step): the copy sits next to this file
    sys.path.append(str(Path(__file__).resolve().parent))
    import masking_reference as masking

IGNORE_INDEX = masking.IGNORE_INDEX
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


# --- 1. the configuration ----------------------------------------------------------------------
@dataclass
class FinetuneConfig:
    """Every hyperparameter of a run, in one place (saved with each checkpoint).

    Why these values: a large pretrained model (0.5B parameters and up) already knows language,
    and SFT only teaches it a format, so full fine-tuning uses a small learning rate (1e-5 to
    5e-6) for 1-3 epochs: more, or larger, overwrites what it knew (catastrophic forgetting)
    and overfits the few thousand examples. `FinetuneConfig.for_large_model()` holds those
    values. The course's embedded model has 1.3M parameters and starts far from the answers'
    format: with 1e-5 it would barely move in a few hundred steps, so it needs a learning rate
    about 100x larger (1e-3 to 3e-3), which a tiny, well-normalised model tolerates.
    """

    model_name: str = "embedded"        # course.models.load_base_model name (or a hub id)
    learning_rate: float = 2e-3         # peak learning rate, reached after warmup
    num_epochs: float = 1.0             # passes over the training set ...
    max_steps: int | None = None        # ... unless set: this many optimizer steps
    batch_size: int = 16                # sequences per micro-batch, per process
    grad_accum_steps: int = 1           # micro-batches per optimizer step
    warmup_ratio: float = 0.05          # share of the steps spent warming up ...
    warmup_steps: int | None = None     # ... unless set: this many steps
    weight_decay: float = 0.01          # AdamW decay of matrices (never norms or biases)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0   # clip the global gradient norm (None: no clipping)
    max_length: int = 256               # tokens per sequence; longer ones are cut
    eval_every: int = 50                # steps between validation runs (0: only at the end)
    eval_batches: int | None = None     # validation micro-batches per run (None: all)
    early_stopping_patience: int | None = None  # evaluations without improvement, then stop
    early_stopping_min_delta: float = 0.0
    sample_every: int = 0               # steps between sample generations (0: never)
    save_every: int = 0                 # steps between checkpoints (0: only at the end)
    log_every: int = 10                 # steps between train-loss lines in metrics.jsonl
    shuffle: bool = True                # a new order every epoch (seeded)
    group_by_length: bool = False       # micro-batches of similar lengths (little padding)
    seed: int = 0
    output_dir: str = "build/step3_sft/run"

    @classmethod
    def for_large_model(cls, model_name: str, **overrides: Any) -> "FinetuneConfig":
        """Usual full fine-tuning settings for a 0.5B-7B chat model: lr 1e-5, 2 epochs, an
        effective batch of 32 (4 x 8 accumulation), 3 % warmup, no weight decay."""
        values = dict(model_name=model_name, learning_rate=1e-5, num_epochs=2.0, batch_size=4,
                      grad_accum_steps=8, warmup_ratio=0.03, weight_decay=0.0, max_length=1024,
                      eval_every=200, save_every=500)
        return cls(**{**values, **overrides})

    @classmethod
    def course_run(cls, **overrides: Any) -> "FinetuneConfig":
        """The notebook's fine-tuning of the embedded model, 4-5 minutes on 2 cores: 2000
        steps of 16 sequences in batches of similar lengths, lr 1e-3 with 5 % warmup and cosine
        decay, no weight decay. The HF Trainer reference (benchmarks/reference_sft.py) has the
        same lr, schedule and length grouping with 32 sequences per step for 1200 steps:
        `course_run(max_steps=1200, grad_accum_steps=2)` (`make sft-loop`). What both reach,
        over seeds, is in docs/BASE_MODEL.md."""
        values = dict(learning_rate=1e-3, max_steps=2000, batch_size=16, grad_accum_steps=1,
                      group_by_length=True, warmup_ratio=0.05, weight_decay=0.0,
                      max_grad_norm=1.0, max_length=384, eval_every=200, eval_batches=8,
                      sample_every=400, save_every=400, log_every=10,
                      output_dir=str(_course_build() / "step3_sft" / "run"))
        return cls(**{**values, **overrides})

    def global_batch_size(self, world_size: int = 1) -> int:
        """Sequences per optimizer step, over all processes."""
        return self.batch_size * self.grad_accum_steps * world_size

    def total_steps(self, num_examples: int, world_size: int = 1) -> int:
        """Optimizer steps of the run: `max_steps` when set, else `num_epochs` passes over
        `num_examples` sequences, where one epoch is `num_examples // global_batch_size` steps
        (the last incomplete batch of an epoch is dropped, so every step sees a full batch),
        rounded up for a fractional number of epochs: ceil(num_epochs * steps_per_epoch).
        At least 1. Raises ValueError when an epoch would have no step at all."""
        # TODO: max_steps if set; else ceil(epochs * (examples // global batch)), at least 1.
        if self.max_steps is not None:
            return max(1, self.max_steps)
        per_epoch = num_examples // self.global_batch_size(world_size)
        if per_epoch < 1:
            raise ValueError(f"{num_examples} examples do not fill one batch of "
                             f"{self.global_batch_size(world_size)} sequences")
        return max(1, math.ceil(self.num_epochs * per_epoch))

    def warmup(self, total_steps: int) -> int:
        """Warmup steps: `warmup_steps` when set, else round(warmup_ratio * total_steps)."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round(self.warmup_ratio * total_steps)

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed (not the intervals or the folder)."""
        keys = ("model_name", "learning_rate", "num_epochs", "max_steps", "batch_size",
                "grad_accum_steps", "warmup_ratio", "warmup_steps", "weight_decay",
                "adam_betas", "adam_eps", "max_grad_norm", "max_length", "shuffle",
                "group_by_length", "seed")
        return {k: _plain(getattr(self, k)) for k in keys}


def _course_build() -> Path:
    """The course's build/ folder (never inside a step folder, whatever the working directory)."""
    from course import REPO_ROOT
    return REPO_ROOT / "build"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# --- 2. the optimizer: AdamW, no weight decay on norms and biases ------------------------------
def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW parameter groups of the model's trainable parameters (requires_grad only):

        [{"params": [...matrices...], "weight_decay": weight_decay},
         {"params": [...vectors...],  "weight_decay": 0.0}]

    Decayed: every parameter with 2 or more dimensions (linear and embedding weights).
    Not decayed: 1-dimensional ones (norm scales, biases) -- decay pulls them towards 0, but a
    norm's neutral value is 1 and a bias has no reason to be small. Each list keeps the order of
    `model.named_parameters()`; a tied weight (one tensor, two names) appears once. Frozen
    parameters are in neither group. Both groups are returned, even when one is empty.
    """
    # TODO: split the trainable parameters by p.ndim: >= 2 decays, 1 (norms, biases) does not.
    decay, no_decay = [], []
    for _, p in model.named_parameters():  # yields a shared (tied) tensor only once
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, cfg: FinetuneConfig) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, cfg.weight_decay)`."""
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.learning_rate,
                             betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)


# --- 3. the schedule: linear warmup, then cosine decay to 0 -------------------------------------
def lr_lambda(step: int, warmup_steps: int, total_steps: int) -> float:
    """The factor the peak learning rate is multiplied by before optimizer step `step` (0-based):
    equal to transformers' `get_cosine_schedule_with_warmup(opt, warmup_steps, total_steps)`.

    - warmup, step < warmup_steps: step / max(1, warmup_steps) (0 at step 0, rising linearly);
    - then progress = (step - warmup_steps) / max(1, total_steps - warmup_steps) and the factor
      is max(0, 0.5 * (1 + cos(pi * progress))): 1 right after warmup, 0.5 halfway, 0 at
      step == total_steps, where the run ends (the same formula beyond it, like transformers).
    """
    # TODO: linear ramp over the warmup steps, then half a cosine from 1 down to 0.
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR of `lr_lambda`: call `scheduler.step()` once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(lr_lambda, warmup_steps=warmup_steps,
                                     total_steps=total_steps))


# --- processes: one, or several under torchrun / accelerate launch -------------------------------
def init_distributed(device: torch.device | str | None = None) -> tuple[int, int]:
    """Join the process group when launched as several processes (WORLD_SIZE > 1); returns
    (rank, world_size), (0, 1) for a plain run.

    `device`: where this process's model will live (default: `course.device.pick_device()`).
    On CUDA each process first takes its own GPU, number LOCAL_RANK (`torch.cuda.set_device`:
    without it every process would land on cuda:0), and the group talks NCCL, which moves
    GPU tensors only. Otherwise the group uses gloo -- on a CUDA machine too, when the model
    stays on the CPU (as in the course's 2-process tests)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device is None:
            from course.device import pick_device
            device = pick_device()
        if torch.device(device).type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return world()


def world() -> tuple[int, int]:
    """(rank, world_size) of this process; (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def collective_device() -> torch.device:
    """Where a tensor must be to take part in a collective: this process's GPU under NCCL
    (the one `init_distributed` set), the CPU under gloo or with one process."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(value: torch.Tensor | float | int) -> torch.Tensor:
    """The sum of `value` over all processes, as a float64 CPU tensor (the value itself when
    there is one process). The sum is taken on `collective_device()`. Every process must call
    it, in the same order."""
    tensor = torch.as_tensor(value, dtype=torch.float64).detach().clone()
    if world()[1] > 1:
        on_device = tensor.to(collective_device())
        dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
        tensor = on_device.cpu()
    return tensor


def all_reduce_gradients(model: torch.nn.Module) -> None:
    """Sum every trainable parameter's .grad over all processes, in place (one flat buffer, one
    message, on `collective_device()`: the model's own GPU under NCCL, so nothing is copied).
    A parameter without a gradient counts as zeros. No-op with one process."""
    if world()[1] == 1:
        return
    params = [p for p in _unique_trainable(model)]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads]).to(collective_device())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    for p, g, summed in zip(params, grads, torch.split(flat, [g.numel() for g in grads])):
        p.grad = summed.view_as(g).to(g.device).clone()


def _unique_trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for _, p in model.named_parameters() if p.requires_grad]


# --- 4. one optimizer step, with gradient accumulation ----------------------------------------
def supervised_tokens(labels: torch.Tensor) -> int:
    """How many positions the loss scores in a batch: labels[:, 1:] that are not IGNORE_INDEX
    (the first label has no logit before it)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def token_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The *summed* cross-entropy over the supervised tokens of one micro-batch (float32,
    connected to the graph). Divided by the token count it is step 2's masked_cross_entropy and
    `model(..., labels=labels).loss`.

    The output layer (hidden -> vocabulary, 128 x 4096 here) is the largest matmul of a small
    model and its logits the largest tensor, yet only positions whose next token is supervised
    (the answers: about 1 position in 9) enter the loss. A forward pre-hook hands the output
    layer only those hidden states, so the logits are (N, vocab) instead of (B, L, vocab): the
    same loss and gradients, about 1.8x faster here (benchmarks/BENCHMARKS.md). Large models do
    the same (`logits_to_keep` in generation, "sparse" or chunked losses in training stacks).

    The batch may also be packed (course/packing.py: several conversations per row): its
    "position_ids" are passed on, and its "attention_mask" may be 4D or absent."""
    device = next(model.parameters()).device
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids")
              if batch.get(k) is not None}
    targets = F.pad(batch["labels"].to(device), (0, 1), value=IGNORE_INDEX)[:, 1:]
    keep = targets != IGNORE_INDEX  # positions whose next token is scored
    only_scored = model.get_output_embeddings().register_forward_pre_hook(
        lambda module, args: (args[0][keep],))
    try:
        logits = model(**inputs, use_cache=False).logits  # (N, vocab): scored positions only
    finally:
        only_scored.remove()
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum")


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler,
               micro_batches: Sequence[dict[str, torch.Tensor]],
               max_grad_norm: float | None) -> dict[str, float]:
    """One optimizer step over this process's `micro_batches` (collated dicts with input_ids,
    attention_mask, labels), in this order:

    1. model.train(); clear the gradients once (optimizer.zero_grad(set_to_none=True));
    2. N = supervised tokens of *all* micro-batches (`supervised_tokens`), summed over
       processes with `all_reduce_sum`;
    3. for each micro-batch: backward of `token_loss_sum(model, mb) / N` -- so the gradients
       add up to the gradient of the mean loss over the whole accumulated batch (dividing each
       micro-batch by its own count, or averaging the micro-batch means, weighs tokens of short
       micro-batches more);
    4. `all_reduce_gradients(model)` (sums over processes; nothing with one process);
    5. only now clip: `torch.nn.utils.clip_grad_norm_(trainable params, max_grad_norm)` --
       its return value is the norm before clipping; with max_grad_norm None do not clip and
       report that norm (clip_grad_norm_ with max_norm=inf);
    6. optimizer.step(), then scheduler.step() -- once per optimizer step, not per micro-batch.

    Returns {"loss": mean loss over the N tokens (summed over processes; a float),
    "grad_norm": float, "lr": the learning rate of the first parameter group used by this
    step, "tokens": N}. With N == 0 the loss is 0.0 and the parameters get zero gradients
    (never NaN). A NaN or infinite loss is reported, not hidden: `train` stops on it.
    """
    # TODO: zero once; count N over all micro-batches; backward(sum / N) each; reduce; clip; step.
    model.train()
    optimizer.zero_grad(set_to_none=True)
    n_tokens = all_reduce_sum(sum(supervised_tokens(mb["labels"]) for mb in micro_batches))
    denominator = float(max(n_tokens.item(), 1.0))  # a batch without labels: 0, not NaN
    loss_sum = torch.zeros((), dtype=torch.float64)
    for mb in micro_batches:
        loss = token_loss_sum(model, mb)
        (loss / denominator).backward()
        loss_sum += loss.detach().double().cpu()
    all_reduce_gradients(model)
    params = _unique_trainable(model)
    for p in params:  # every parameter gets a gradient, zeros when nothing reached it
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grad_norm = torch.nn.utils.clip_grad_norm_(
        params, max_grad_norm if max_grad_norm is not None else float("inf"))
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    return {"loss": float(all_reduce_sum(loss_sum) / denominator),
            "grad_norm": float(grad_norm), "lr": float(lr), "tokens": int(n_tokens.item())}


# --- 5. evaluation ---------------------------------------------------------------------------
def evaluate(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]]
             ) -> dict[str, float]:
    """Validation loss and perplexity over `batches`, without training anything.

    Runs in eval mode (dropout off) and under torch.no_grad() (no graph is kept: less memory,
    faster), then puts the model back in the mode it was in. The loss is the mean over all
    supervised tokens of all batches (sum of `token_loss_sum` / sum of `supervised_tokens`,
    both summed over processes with `all_reduce_sum`), not the mean of per-batch means.
    Returns {"loss", "perplexity": exp(loss), "tokens"}; loss 0.0 when there is no token.
    """
    # TODO: eval mode + no_grad; total loss sum / total tokens (all-reduced); restore the mode.
    was_training = model.training
    model.eval()
    loss_sum, tokens = torch.zeros((), dtype=torch.float64), 0
    try:
        with torch.no_grad():
            for batch in batches:
                loss_sum += token_loss_sum(model, batch).double().cpu()
                tokens += supervised_tokens(batch["labels"])
    finally:
        model.train(was_training)
    total, count = all_reduce_sum(loss_sum), all_reduce_sum(tokens)
    loss = float(total / count) if count > 0 else 0.0
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": int(count)}


# --- 6. early stopping ----------------------------------------------------------------------
@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved for `patience` evaluations.

    An evaluation improves when its loss < best - min_delta; then best becomes that loss and
    the count of bad evaluations goes back to 0; otherwise the count grows by 1. `patience`
    None never stops. The first evaluation always improves (best starts at +inf).
    """

    patience: int | None = None
    min_delta: float = 0.0
    best: float = math.inf
    bad_evals: int = 0

    def step(self, val_loss: float) -> bool:
        """Record one evaluation's loss; True when training should stop now (bad_evals has
        reached patience). A NaN loss never improves."""
        # TODO: improvement -> new best, count 0; else count + 1; stop when count >= patience.
        if val_loss < self.best - self.min_delta:
            self.best, self.bad_evals = float(val_loss), 0
        else:
            self.bad_evals += 1
        return self.patience is not None and self.bad_evals >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


# --- 7. checkpoints: everything needed to continue exactly, written atomically -------------------
class CheckpointMismatchError(ValueError):
    """A checkpoint written by a different model or configuration."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def rng_state() -> dict[str, Any]:
    """The state of every random number generator a run uses (Python, NumPy, torch, CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def model_fingerprint(model: torch.nn.Module) -> dict[str, Any]:
    """The model's architecture as a checkpoint records it: parameter names and shapes."""
    return {name: list(p.shape) for name, p in model.state_dict().items()}


def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, step: int,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write one file holding everything a resumed run needs, atomically.

    The file is a `torch.save` of the dict {"model": model.state_dict(), "optimizer":
    optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(),
    "step": step, "extra": extra or {}}. Atomic: save to a temporary file in the same folder
    (e.g. path + ".tmp"), then `os.replace(tmp, path)` -- a crash mid-write then leaves the
    previous checkpoint intact instead of a truncated "latest" one. Creates the folder if
    needed; returns `Path(path)`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # TODO: build the dict (model, optimizer, scheduler, rng, step, extra); save to tmp; replace.
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rng_state(), "step": step,
             "extra": extra or {}}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The dict `save_checkpoint` wrote; a clear error when the file is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - a truncated file raises several kinds of error
        raise CheckpointMismatchError(f"{path}: not a readable checkpoint ({err})") from err


def check_compatible(state: dict[str, Any], model: torch.nn.Module,
                     expect: dict[str, Any] | None, path: str | Path = "checkpoint") -> None:
    """Raise CheckpointMismatchError, naming what differs, unless the checkpoint `state` was
    written for this model (same parameter names and shapes) and for the config fingerprint
    `expect` (None: not checked)."""
    ours = model_fingerprint(model)
    theirs = {name: list(t.shape) for name, t in state.get("model", {}).items()}
    if ours != theirs:
        diff = sorted(set(ours) ^ set(theirs)) or [k for k in ours if ours[k] != theirs[k]]
        raise CheckpointMismatchError(
            f"{path} was written for a different model (parameters differ: "
            f"{', '.join(diff[:4])}{' ...' if len(diff) > 4 else ''})")
    saved = state.get("extra", {}).get("config")
    if expect is not None and saved is not None and saved != expect:
        diff = [f"{k}: checkpoint {saved.get(k)!r}, now {expect.get(k)!r}"
                for k in sorted(set(saved) | set(expect)) if saved.get(k) != expect.get(k)]
        raise CheckpointMismatchError(f"{path} was written with a different config "
                                      f"({'; '.join(diff)}); use a new output_dir or the same "
                                      f"settings to resume")


def load_checkpoint(path: str | Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler,
                    expect: dict[str, Any] | None = None) -> dict[str, Any]:
    """Restore a run from `save_checkpoint`'s file: the model's weights, the optimizer's state
    (AdamW's moments and step counts), the scheduler's position and every RNG state
    (`set_rng_state`), each with its `load_state_dict`. Checks compatibility first (a clear
    CheckpointMismatchError for another model or config). Returns {"step", "extra"}.
    """
    state = read_checkpoint(path)
    check_compatible(state, model, expect, path)
    # TODO: load model, optimizer and scheduler states, then the RNG states; return step, extra.
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return {"step": state["step"], "extra": state["extra"]}


# --- data: step 2's labels and collator ----------------------------------------------------------
def tokenize_split(dataset, tokenizer, max_length: int) -> list[dict[str, list[int]]]:
    """Conversations (`course.data.load_split(...)` or a list of {"messages"}) -> examples with
    input_ids / attention_mask / labels (step 2: labels by hand, cut to max_length, examples
    left without a trained token dropped)."""
    rows = list(dataset)
    batch = {"messages": [r["messages"] for r in rows], "id": [r.get("id", i)
                                                               for i, r in enumerate(rows)]}
    enc = masking.labels_for_batch(batch, tokenizer=tokenizer)
    examples = [{k: enc[k][i] for k in ("input_ids", "attention_mask", "labels")}
                for i in range(len(rows))]
    kept, _dropped = masking.truncate_and_filter(examples, max_length)
    return kept


def epoch_order(num_examples: int, epoch: int, cfg: FinetuneConfig) -> list[int]:
    """The example order of an epoch: a permutation seeded by (seed, epoch), or 0..n-1."""
    if not cfg.shuffle:
        return list(range(num_examples))
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    return torch.randperm(num_examples, generator=gen).tolist()


@functools.lru_cache(maxsize=2)
def _grouped_order(lengths: tuple[int, ...], chunk: int, seed: int) -> list[int]:
    from course.packing import length_grouped_order  # the HF Trainer's group_by_length

    return length_grouped_order(lengths, chunk, seed=seed)


def grouped_epoch_order(examples: Sequence[dict], epoch: int, cfg: FinetuneConfig,
                        world_size: int = 1) -> list[int]:
    """`epoch_order`, or with `cfg.group_by_length` a random order whose consecutive chunks of
    batch_size * world_size sequences (one micro-batch over all processes) have similar
    lengths: little padding, and attention only as long as each micro-batch's longest
    sequence. Still a new order every epoch."""
    if not (cfg.group_by_length and cfg.shuffle):
        return epoch_order(len(examples), epoch, cfg)
    lengths = tuple(len(e["input_ids"]) for e in examples)
    return _grouped_order(lengths, cfg.batch_size * world_size, cfg.seed * 100_003 + epoch)


def micro_batches_for_step(examples: Sequence[dict], step: int, cfg: FinetuneConfig,
                           pad_token_id: int, rank: int = 0, world_size: int = 1,
                           collate: Callable | None = None) -> list[dict[str, torch.Tensor]]:
    """This process's micro-batches of optimizer step `step` (0-based), collated.

    Step s of the run is batch s % steps_per_epoch of epoch s // steps_per_epoch (in the
    epoch's `grouped_epoch_order`: shuffled, by similar lengths with cfg.group_by_length). Its
    global batch (cfg.global_batch_size(world_size) examples) is cut into grad_accum_steps
    chunks; process `rank` takes positions [rank * batch_size, (rank + 1) * batch_size) of
    each chunk. The union over processes is the same set of sequences whatever the number of
    processes, so 2 processes with half the batch size train on what 1 process trains on.
    `collate(features, pad_token_id)` batches a chunk (default: step 2's `collate`; e.g.
    `course.packing.PackedCollator` for packed rows).
    """
    collate = collate or masking.collate
    size = cfg.global_batch_size(world_size)
    per_epoch = len(examples) // size
    if per_epoch < 1:
        raise ValueError(f"{len(examples)} examples do not fill one batch of {size}")
    epoch, index = divmod(step, per_epoch)
    order = grouped_epoch_order(examples, epoch, cfg, world_size)[index * size:(index + 1) * size]
    chunk = cfg.batch_size * world_size
    out = []
    for a in range(cfg.grad_accum_steps):
        mine = order[a * chunk + rank * cfg.batch_size:a * chunk + (rank + 1) * cfg.batch_size]
        out.append(collate([examples[i] for i in mine], pad_token_id))
    return out


def eval_batches(examples: Sequence[dict], cfg: FinetuneConfig, pad_token_id: int,
                 rank: int = 0, world_size: int = 1, collate: Callable | None = None
                 ) -> list[dict[str, torch.Tensor]]:
    """Validation micro-batches of this process (examples rank, rank + world_size, ...; sorted
    by length so little is padded), at most cfg.eval_batches of them."""
    mine = sorted(examples[rank::world_size], key=lambda e: len(e["input_ids"]))
    size = cfg.batch_size * 2  # no gradients: twice the micro-batch fits in the same memory
    collate = collate or masking.collate
    batches = [collate(mine[i:i + size], pad_token_id) for i in range(0, len(mine), size)]
    return batches[:cfg.eval_batches] if cfg.eval_batches else batches


# --- logging --------------------------------------------------------------------------------
class MetricsLog:
    """Appends one JSON object per line to `output_dir/metrics.jsonl` (and to TensorBoard when
    it is installed). Only process 0 writes."""

    def __init__(self, folder: str | Path, enabled: bool = True, resume_step: int | None = None):
        self.path = Path(folder) / METRICS
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("", encoding="utf-8")
        elif self.path.exists():  # drop what was logged after the checkpoint we resume from
            lines = [ln for ln in self.path.read_text(encoding="utf-8").splitlines()
                     if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.path.parent / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self.writer = None

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.writer.add_scalar(f"{record.get('split', 'train')}/{key}", value,
                                           record.get("step", 0))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(folder: str | Path) -> list[dict[str, Any]]:
    """The records of `folder/metrics.jsonl`, in order."""
    path = Path(folder) / METRICS
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


# --- the loop --------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What `train` did: per-step train records, evaluations, samples, and how it ended."""

    steps: int
    train: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    stopped_early: bool
    seconds: float
    output_dir: str
    padding_waste: float = 0.0  # padded positions / all positions of the training batches


def sample_generations(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 40
                       ) -> list[str]:
    """Greedy answers to chat-formatted `prompts` (course.evaluate.generate)."""
    from course.evaluate import generate
    return generate(model, tokenizer, list(prompts), max_new_tokens=max_new_tokens)


def _due(step: int, every: int, total: int) -> bool:
    return step == total or (every > 0 and step % every == 0)


def train(model: torch.nn.Module, tokenizer, train_examples: Sequence[dict],
          val_examples: Sequence[dict], cfg: FinetuneConfig, resume: bool = False,
          sample_prompts: Sequence[str] = (), progress: bool = True,
          on_step: Callable[[int, dict], None] | None = None,
          collate: Callable | None = None) -> TrainResult:
    """Fine-tune `model` on tokenized `train_examples` (see `tokenize_split`) with `cfg`.

    Every step: `train_step` on this process's micro-batches. Every `eval_every` steps (and at
    the end): `evaluate` on the validation examples, and early stopping. Every
    `sample_every` steps: greedy answers to `sample_prompts`. Every `save_every` steps (and at
    the end): an atomic checkpoint in `output_dir`. Metrics go to `output_dir/metrics.jsonl`;
    tqdm shows loss, learning rate and tokens/s. `resume=True` continues from
    `output_dir/checkpoint.pt` when it exists (same model and config, or a clear error). A NaN
    or infinite loss raises NonFiniteLossError; the last checkpoint on disk stays the last good
    one. `on_step(step, stats)` is called after every step (tests use it to simulate a crash).
    `collate(features, pad_token_id)` builds the batches (default: step 2's padding `collate`;
    `course.packing.PackedCollator` packs); each step reports its padding waste.
    """
    from course.packing import token_counts  # real tokens of any batch layout (2D, 4D, packed)
    rank, world_size = world()
    out = Path(cfg.output_dir)
    ckpt = out / CHECKPOINT
    total = cfg.total_steps(len(train_examples), world_size)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg.warmup(total), total)
    stopper = EarlyStopping(cfg.early_stopping_patience, cfg.early_stopping_min_delta)
    config = cfg.fingerprint()
    step = 0
    if resume and ckpt.exists():
        restored = load_checkpoint(ckpt, model, optimizer, scheduler, expect=config)
        step = restored["step"]
        stopper.load_state_dict(restored["extra"].get("early_stopping", {}))
    log = MetricsLog(out, enabled=rank == 0, resume_step=step if resume else None)
    if rank == 0 and not resume:
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
    val = eval_batches(val_examples, cfg, tokenizer.pad_token_id, rank, world_size, collate)
    pad = tokenizer.pad_token_id
    result = TrainResult(step, [], [], [], False, 0.0, str(out))
    real_total = positions_total = 0

    def run_eval(at: int) -> bool:
        ev = evaluate(model, val)
        record = {"step": at, "split": "val", **ev}
        result.evals.append(record)
        log.log(record)
        return stopper.step(ev["loss"])

    def save(at: int) -> None:
        if rank == 0:
            save_checkpoint(ckpt, model, optimizer, scheduler, at,
                            {"config": config, "early_stopping": stopper.state_dict()})
        if world_size > 1:
            dist.barrier()

    if step == 0 and cfg.eval_every > 0 and val:
        run_eval(0)  # the model before fine-tuning: where the curves start
    start = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc="sft", disable=not progress or rank != 0)
    while step < total:
        batches = micro_batches_for_step(train_examples, step, cfg, pad, rank, world_size,
                                         collate)
        t0 = time.perf_counter()
        stats = train_step(model, optimizer, scheduler, batches, cfg.max_grad_norm)
        counts = [token_counts(b) for b in batches]
        seen = int(all_reduce_sum(sum(c[0] for c in counts)))
        positions = int(all_reduce_sum(sum(c[1] for c in counts)))
        stats["tokens_per_s"] = seen / max(time.perf_counter() - t0, 1e-9)
        stats["padding_waste"] = 1.0 - seen / max(positions, 1)
        real_total += seen
        positions_total += positions
        if not math.isfinite(stats["loss"]):
            bar.close()
            log.log({"step": step + 1, "split": "error", "loss": str(stats["loss"])})
            raise NonFiniteLossError(
                f"step {step + 1}: the training loss is {stats['loss']} (learning rate "
                f"{stats['lr']:.2e}, gradient norm {stats['grad_norm']:.3g}). Training stopped; "
                f"the last good checkpoint is {ckpt if ckpt.exists() else 'not written yet'}. "
                f"Lower the learning rate or check the data for empty or broken batches.")
        step += 1
        record = {"step": step, "split": "train", **stats}
        result.train.append(record)
        if step == 1 or _due(step, cfg.log_every, total):
            log.log(record)
        bar.update(1)
        bar.set_postfix(loss=f"{stats['loss']:.3f}", lr=f"{stats['lr']:.1e}",
                        tok_s=f"{stats['tokens_per_s']:,.0f}",
                        pad=f"{stats['padding_waste']:.0%}")
        stop = False
        if val and _due(step, cfg.eval_every, total):
            stop = run_eval(step)
        if sample_prompts and cfg.sample_every > 0 and (step % cfg.sample_every == 0
                                                         or step == total):
            texts = sample_generations(model, tokenizer, sample_prompts)
            sample = {"step": step, "split": "sample", "texts": texts}
            result.samples.append(sample)
            log.log(sample)
        if stop or _due(step, cfg.save_every, total):
            save(step)
        if on_step is not None:
            on_step(step, stats)
        if stop:
            result.stopped_early = True
            break
    bar.close()
    log.close()
    result.steps, result.seconds = step, time.perf_counter() - start
    result.padding_waste = 1.0 - real_total / max(positions_total, 1)
    return result
