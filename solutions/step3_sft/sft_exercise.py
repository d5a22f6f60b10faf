"""Step 3 exercises: the supervised fine-tuning loop, written by hand.

tutorial.ipynb imports this module and reloads it before every cell (%autoreload), so edit a
function here, save, and re-run the notebook cell that uses it. Each TODO is a function body;
its docstring is the specification that the checks and the grader hold you to.

    cfg = FinetuneConfig(learning_rate=1e-3, max_steps=300, batch_size=16, grad_accum_steps=2)
    result = train(model, tokenizer, train_examples, val_examples, cfg)

One optimizer step ("step") sees `batch_size * grad_accum_steps * world_size` sequences: each
process runs `grad_accum_steps` micro-batches of `batch_size` sequences, and the gradients of
all of them are added up before the optimizer moves. The loss of a step is the mean over every
supervised token of that whole batch, exactly as if it had been one big batch.

The same code runs as several processes (`torchrun --nproc_per_node 2 script.py`): each process
trains on its share of every batch, and the supervised-token counts and gradients are summed
over processes (`all_reduce_sum`, `all_reduce_gradients`, from course/distributed.py).

What is not yours to write comes from the course: the settings' fields (course/sft_config.py),
batches (course/batching.py), checkpoint plumbing (course/checkpoints.py), the metrics log and
the driver that runs steps, evaluations and checkpoints with your functions (course/sft_loop.py).
"""

import dataclasses
from dataclasses import dataclass
import functools
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from course import sft_loop
from course.batching import (collate, eval_batches, grouped_epoch_order,  # noqa: F401
                             micro_batches_for_step, tokenize_split)
from course.checkpoints import (CHECKPOINT, CheckpointMismatchError,  # noqa: F401
                                check_compatible, fsync_path, read_checkpoint, rng_state,
                                set_rng_state)
from course.data import IGNORE_INDEX
from course.distributed import (all_reduce_gradients, all_reduce_sum,  # noqa: F401
                                collective_device, init_distributed, unique_trainable, world)
from course.metrics_log import METRICS, MetricsLog, read_metrics  # noqa: F401
from course.sft_config import SFTSettings
from course.sft_loop import NonFiniteLossError, TrainResult  # noqa: F401


# --- 1. the configuration ----------------------------------------------------------------------
class FinetuneConfig(SFTSettings):
    """Every hyperparameter of a run, in one place (fields: course/sft_config.py).

    Why these values: a large pretrained model (0.5B parameters and up) already knows language,
    so full fine-tuning uses a small learning rate, about 1e-5 (5e-6 to 2e-5), for 1-3 epochs:
    more, or larger, overwrites what it knew (catastrophic forgetting) and overfits the few
    thousand examples; LoRA uses about ten times more, 1e-4 (step 4).
    `FinetuneConfig.for_large_model()` holds the full fine-tuning values. The course's embedded
    model has 1.3M parameters and starts far from the answers' format: at 1e-5 it would barely
    move in a few hundred steps, so it trains at 1e-3, 100x more (the default; at 2e-3 one run
    in three derailed, at 1e-3 none of three: step 3, section 9).
    `course_run()`: the notebook's run; `global_batch_size(world_size)`: sequences per step.
    """

    def total_steps(self, num_examples: int, world_size: int = 1) -> int:
        """Optimizer steps of the run: `max_steps` when set, else `num_epochs` passes over
        `num_examples` sequences, where one epoch is `num_examples // global_batch_size` steps
        (the last incomplete batch of an epoch is dropped, so every step sees a full batch),
        rounded up for a fractional number of epochs: ceil(num_epochs * steps_per_epoch).
        At least 1. Raises ValueError when an epoch would have no step at all."""
        # TODO: max_steps if set; else ceil(epochs * (examples // global batch)), at least 1.
        ### BEGIN SOLUTION
        if self.max_steps is not None:
            return max(1, self.max_steps)
        per_epoch = num_examples // self.global_batch_size(world_size)
        if per_epoch < 1:
            raise ValueError(f"{num_examples} examples do not fill one batch of "
                             f"{self.global_batch_size(world_size)} sequences")
        return max(1, math.ceil(self.num_epochs * per_epoch))
        ### END SOLUTION


# --- 2. the optimizer: AdamW, no weight decay on norms and biases ------------------------------
def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW parameter groups of the model's trainable parameters (requires_grad only):

        [{"params": [...matrices...], "weight_decay": weight_decay},
         {"params": [...vectors...],  "weight_decay": 0.0}]

    Decayed: every parameter with 2 or more dimensions (linear and embedding weights).
    Not decayed: 1-dimensional ones (norm scales, biases) -- decay pulls them towards 0, but a
    norm's neutral value is 1 and a bias has no reason to be small. (This rule by shape is
    nanoGPT's; the HF Trainer excludes biases and normalisation weights by name and layer type
    instead, which picks the same parameters in Qwen2.) Each list keeps the order of
    `model.named_parameters()`; a tied weight (one tensor, two names) appears once. Frozen
    parameters are in neither group. Both groups are returned, even when one is empty.
    """
    # TODO: split the trainable parameters by p.ndim: >= 2 decays, 1 (norms, biases) does not.
    ### BEGIN SOLUTION
    decay, no_decay = [], []
    for _, p in model.named_parameters():  # yields a shared (tied) tensor only once
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    ### END SOLUTION


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR of `lr_lambda`: call `scheduler.step()` once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(lr_lambda, warmup_steps=warmup_steps,
                                     total_steps=total_steps))


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
    (the answers: about 1 position in 10) enter the loss. A forward pre-hook hands the output
    layer only those hidden states, so the logits are (N, vocab) instead of (B, L, vocab): the
    same loss and gradients, 1.75x faster end to end here (course_padded against
    course_padded_full_logits in benchmarks/results/BENCHMARKS.md). Large models do
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

    Returns plain Python numbers, not tensors (they go to the JSON metrics log):
    {"loss": float, the mean loss over the N tokens (summed over processes), "grad_norm": float,
    "lr": float, the learning rate of the first parameter group used by this step, "tokens":
    int, N}. `all_reduce_sum` returns a float64 tensor: turn it into a number with `.item()`,
    `float(...)` or `int(...)`. A step whose micro-batches have no supervised token (N == 0)
    happens when every answer was cut off: divide by max(N, 1) instead of N, so the loss is 0.0
    and the gradients are zeros, never NaN. A parameter the loss never reached keeps
    `.grad = None`, and AdamW leaves it alone (no momentum, no decay), as in the libraries.
    A NaN or infinite loss is reported, not hidden: `train` stops on it.
    """
    # TODO: zero once; N over all micro-batches; backward(sum / max(N, 1)); reduce; clip; step.
    ### BEGIN SOLUTION
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
    params = unique_trainable(model)
    grad_norm = torch.nn.utils.clip_grad_norm_(
        params, max_grad_norm if max_grad_norm is not None else float("inf"))
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    return {"loss": float(all_reduce_sum(loss_sum) / denominator),
            "grad_norm": float(grad_norm), "lr": float(lr), "tokens": int(n_tokens.item())}
    ### END SOLUTION


# --- 5. evaluation ---------------------------------------------------------------------------
def evaluate(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]]
             ) -> dict[str, float]:
    """Validation loss and perplexity over `batches`, without training anything.

    Runs in eval mode (dropout off) and under torch.no_grad() (no graph is kept: less memory,
    faster), then puts the model back in the mode it was in. The loss is the mean over all
    supervised tokens of all batches (sum of `token_loss_sum` / sum of `supervised_tokens`,
    both summed over processes with `all_reduce_sum`), not the mean of per-batch means.
    Returns plain Python numbers (not tensors): {"loss": float, "perplexity": float, exp(loss),
    "tokens": int}; loss 0.0 when there is no token. (`all_reduce_sum` returns a float64
    tensor: `float(...)`, `int(...)`.)
    """
    # TODO: eval mode + no_grad; total loss sum / total tokens (all-reduced); restore the mode.
    ### BEGIN SOLUTION
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
    ### END SOLUTION


# --- 6. early stopping ----------------------------------------------------------------------
@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved for `patience` evaluations.

    An evaluation improves when its loss < best - min_delta; then best becomes that loss and
    the count of bad evaluations goes back to 0; otherwise the count grows by 1. `patience`
    None never stops. The first evaluation always improves (best starts at +inf). (The driver
    keeps the weights of every new best and, with `restore_best`, ends the run on them.)
    """

    patience: int | None = None
    min_delta: float = 0.0
    best: float = math.inf
    bad_evals: int = 0

    def step(self, val_loss: float) -> bool:
        """Record one evaluation's loss; True when training should stop now (bad_evals has
        reached patience). A NaN loss never improves."""
        # TODO: improvement -> new best, count 0; else count + 1; stop when count >= patience.
        ### BEGIN SOLUTION
        if val_loss < self.best - self.min_delta:
            self.best, self.bad_evals = float(val_loss), 0
        else:
            self.bad_evals += 1
        return self.patience is not None and self.bad_evals >= self.patience
        ### END SOLUTION

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


# --- 7. checkpoints: everything needed to continue exactly, written atomically -------------------
def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, step: int,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write one file holding everything a resumed run needs, atomically.

    The file is a `torch.save` of the dict {"model": model.state_dict(), "optimizer":
    optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(),
    "step": step, "extra": extra or {}}. Atomic: save to a temporary file in the same folder
    (e.g. path + ".tmp"), then `os.replace(tmp, path)` -- a crash mid-write then leaves the
    previous checkpoint intact instead of a truncated "latest" one. That protects against a
    crash of the process; against a power loss, also `fsync_path(tmp)` before the rename and
    `fsync_path(folder)` after it (the OS may not have written the data yet). Creates the
    folder if needed; returns `Path(path)`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # TODO: build the dict (model, optimizer, scheduler, rng, step, extra); save to tmp; replace.
    ### BEGIN SOLUTION
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rng_state(), "step": step,
             "extra": extra or {}}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    fsync_path(tmp)  # the bytes on disk before the name points at them
    os.replace(tmp, path)
    fsync_path(path.parent)  # the rename itself on disk
    return path
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return {"step": state["step"], "extra": state["extra"]}
    ### END SOLUTION


# --- the loop: course/sft_loop.py runs it with the functions above -----------------------------
def train(model: torch.nn.Module, tokenizer, train_examples: Sequence[dict],
          val_examples: Sequence[dict], cfg: FinetuneConfig, resume: bool = False,
          sample_prompts: Sequence[str] = (), progress: bool = True,
          on_step: Callable[[int, dict], None] | None = None,
          collate: Callable | None = None) -> TrainResult:
    """Fine-tune `model` on tokenized `train_examples` (`tokenize_split`) with `cfg`, built from
    this module's functions: every step `train_step`, every `eval_every` steps `evaluate` and
    `EarlyStopping`, every `save_every` steps `save_checkpoint` (`resume=True`: continue with
    `load_checkpoint`). The driver, its logs and options: `course.sft_loop.train`."""
    return sft_loop.train(globals(), model, tokenizer, train_examples, val_examples, cfg,
                          resume=resume, sample_prompts=sample_prompts, progress=progress,
                          on_step=on_step, collate=collate)
