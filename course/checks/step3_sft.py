"""Visible checks for step 3 (the SFT loop), with a diagnosis for each classic mistake.

    from course.checks import step3_sft as checks
    checks.check_train_step(ex, model, examples, tokenizer)   # ex = the learner's sft_exercise

Expected values come from the libraries (transformers' schedule and the Trainer's decay rule,
the model's own loss on one big batch), never from the course's answer key.
"""
from __future__ import annotations

import copy
import math
import os
import random
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Sequence

import numpy as np
import torch

from course.grading import call, fail, injected, passed

IGNORE_INDEX = -100


# --- total_steps ---------------------------------------------------------------------------------
def check_total_steps(ex: ModuleType) -> None:
    cfg = ex.FinetuneConfig(max_steps=123, num_epochs=5.0)
    got = call(cfg.total_steps, 1000, what="total_steps with max_steps=123")
    if got != 123:
        fail("max_steps overrides num_epochs", got=got, expected=123)
    cases = [(dict(batch_size=16), 1000, 1, 62, "one epoch, 16 per step"),
             (dict(batch_size=8, grad_accum_steps=4), 1000, 1, 31, "8 x 4 accumulation"),
             (dict(batch_size=8, grad_accum_steps=2), 1000, 2, 31, "8 x 2 x 2 processes"),
             (dict(batch_size=10, num_epochs=2.5), 95, 1, 23, "2.5 epochs of 9 steps")]
    for kw, n, world, want, label in cases:
        got = call(ex.FinetuneConfig(**kw).total_steps, n, world, what=f"total_steps ({label})")
        if got != want:
            mistake = None
            if got == math.ceil(kw.get("num_epochs", 1.0) * (n // kw["batch_size"])):
                mistake = ("steps per epoch from the micro-batch size: a step sees batch_size x "
                           "grad_accum_steps x world_size sequences (gradient accumulation and "
                           "processes ignored)")
            elif got == int(kw.get("num_epochs", 1.0) * (n // (kw["batch_size"] * world *
                                                           kw.get("grad_accum_steps", 1)))):
                mistake = "a fractional number of epochs rounded down instead of up"
            fail(f"total_steps ({label}, {n} examples)", mistake=mistake, got=got, expected=want)
    passed("total_steps: max_steps, epochs x (examples // global batch), rounded up")


# --- param_groups --------------------------------------------------------------------------------
def check_param_groups(ex: ModuleType, model: torch.nn.Module) -> None:
    from transformers import Trainer

    names = {id(p): n for n, p in model.named_parameters()}
    groups = call(ex.param_groups, model, 0.1, what="param_groups(model, 0.1)")
    if not isinstance(groups, list) or len(groups) != 2:
        fail("param_groups returns a list of two dicts", got=groups)
    decayed = {names.get(id(p), "?") for p in groups[0]["params"]}
    plain = {names.get(id(p), "?") for p in groups[1]["params"]}
    library = set(Trainer.get_decay_parameter_names(None, model)) & set(names.values())
    if decayed & (set(names.values()) - library):
        wrong = sorted(decayed - library)
        fail("norms and biases are not decayed (as in the HF Trainer)",
             mistake="weight decay on norms and biases: it pulls a norm's scale towards 0 "
                     "instead of its neutral 1", got=wrong[:4])
    if decayed != library or plain != set(names.values()) - library:
        fail("every trainable parameter in exactly one group, matrices decayed",
             got=sorted(library - decayed)[:4], expected="no missing matrix")
    if (groups[0].get("weight_decay"), groups[1].get("weight_decay")) != (0.1, 0.0):
        fail("weight_decay is 0.1 in the first group and 0.0 in the second",
             got=(groups[0].get("weight_decay"), groups[1].get("weight_decay")))
    frozen = copy.deepcopy(model)
    frozen.get_input_embeddings().weight.requires_grad_(False)
    groups = call(ex.param_groups, frozen, 0.1, what="param_groups(model with frozen embeddings)")
    if any(not p.requires_grad for g in groups for p in g["params"]):
        fail("frozen parameters are left out",
             mistake="frozen parameters handed to the optimizer (LoRA in step 4 would decay the "
                     "frozen base weights)")
    passed(f"param_groups: {len(decayed)} matrices decayed, {len(plain)} norms/biases not "
           f"(the HF Trainer's split); frozen parameters left out")


# --- lr_lambda -----------------------------------------------------------------------------------
def check_lr_lambda(ex: ModuleType) -> None:
    from transformers import get_cosine_schedule_with_warmup

    for warmup, total in ((10, 100), (0, 40), (5, 6)):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        hf = get_cosine_schedule_with_warmup(opt, warmup, total).lr_lambdas[0]
        for step in range(total + 1):
            got = call(ex.lr_lambda, step, warmup, total,
                       what=f"lr_lambda({step}, {warmup}, {total})")
            want = hf(step)
            if isinstance(got, (int, float)) and math.isclose(got, want, abs_tol=1e-12):
                continue
            mistake = None
            if step < warmup and step == 0:
                mistake = "no warmup: the factor must start at 0 and rise linearly"
            elif step < warmup:
                mistake = "warmup must be step / warmup_steps"
            elif step == total:
                mistake = "the cosine does not end at 0 at total_steps (half a period, 0.5*(1+cos))"
            elif step == warmup:
                mistake = "the factor right after warmup must be 1"
            else:
                mistake = ("not transformers' cosine: does not end at 0 the way "
                           "0.5 * (1 + cos(pi * progress)) does")
            fail(f"lr_lambda equals get_cosine_schedule_with_warmup (warmup {warmup}, total "
                 f"{total}, step {step})", mistake=mistake, got=got, expected=want)
    passed("lr_lambda equals transformers.get_cosine_schedule_with_warmup at every step")


# --- train_step ----------------------------------------------------------------------------------
def _collate(features: Sequence[dict], pad: int) -> dict[str, torch.Tensor]:
    length = max(len(f["input_ids"]) for f in features)
    out = {"input_ids": [], "attention_mask": [], "labels": []}
    for f in features:
        gap = length - len(f["input_ids"])
        out["input_ids"].append(list(f["input_ids"]) + [pad] * gap)
        out["attention_mask"].append([1] * len(f["input_ids"]) + [0] * gap)
        out["labels"].append(list(f["labels"]) + [IGNORE_INDEX] * gap)
    return {k: torch.tensor(v) for k, v in out.items()}


def _grads_of(model: torch.nn.Module, batches: Sequence[dict], weights: Sequence[float]
              ) -> dict[str, torch.Tensor]:
    """Sum over batches of weight * gradient of the model's own mean loss (HF `labels=`)."""
    model = copy.deepcopy(model).train()
    model.zero_grad(set_to_none=True)
    for b, w in zip(batches, weights):
        loss = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                     labels=b["labels"]).loss
        (loss * w).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _max_diff(a: dict, b: dict) -> float:
    return max((a[n] - b[n]).abs().max().item() for n in b)


def _count(labels: torch.Tensor) -> int:
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def _check_numbers(what: str, got, keys: Sequence[str]) -> None:
    """Fail unless `got` is a dict whose `keys` hold plain Python numbers, not tensors."""
    if not isinstance(got, dict):
        fail(f"{what} returns a dict", got=type(got).__name__)
    for key in keys:
        value = got.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            fail(f"{what} returns {key!r} as a Python number (float or int)",
                 mistake=f"{key!r} is a {type(value).__name__}: all_reduce_sum returns a float64 "
                         f"tensor; turn it into a number with float(...), int(...) or .item() "
                         f"(the training driver writes these values to a JSON log)")


def _run_train_step(ex, model, micro, clip, calls=1):
    model = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=0.0)  # lr 0: the weights stay put
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    stats = None
    for _ in range(calls):
        stats = call(ex.train_step, model, opt, sched, micro, clip,
                     what="train_step(model, optimizer, scheduler, micro_batches, clip)")
    return model, sched, stats


def check_train_step(ex: ModuleType, model: torch.nn.Module, examples: Sequence[dict],
                     tokenizer) -> None:
    pad = tokenizer.pad_token_id
    picked = sorted(examples[:40], key=lambda e: len(e["input_ids"]))  # short ones: quick
    features = [picked[0], picked[12], picked[11], picked[5], picked[9], picked[1]]
    micro = [_collate(features[:3], pad), _collate(features[3:4], pad),
             _collate(features[4:], pad)]
    full = _collate(features, pad)
    n_total = _count(full["labels"])
    expected = _grads_of(model, [full], [1.0])
    scale = max(v.abs().max().item() for v in expected.values())
    tol = 1e-5 * max(1.0, scale)

    got_model, sched, stats = _run_train_step(ex, model, micro, None)
    grads = {n: p.grad for n, p in got_model.named_parameters()}
    if any(g is None for g in grads.values()):
        fail("train_step leaves the accumulated gradients in .grad",
             mistake="gradients cleared after the step instead of before it (or never computed)")
    if _max_diff(grads, expected) > tol:
        counts = [_count(b["labels"]) for b in micro]
        per_micro = _grads_of(model, micro, [1 / len(micro)] * len(micro))
        last_only = _grads_of(model, micro[-1:], [counts[-1] / n_total])
        mistake = None
        if _max_diff(grads, per_micro) <= tol:
            mistake = ("loss normalised per micro-batch (mean of micro-batch means): divide "
                       "every micro-batch's summed loss by the tokens of the whole batch")
        elif _max_diff(grads, last_only) <= tol:
            mistake = ("zero_grad inside the accumulation loop: only the last micro-batch's "
                       "gradient is left")
        fail("3 unequal micro-batches: accumulated gradient == gradient of the model's mean loss "
             "over the whole batch", mistake=mistake,
             detail=f"max |difference| {_max_diff(grads, expected):.3g} (tolerance {tol:.1g})")
    passed(f"3 micro-batches of {[len(b['labels']) for b in micro]} sequences: accumulated "
           f"gradient == full-batch gradient")
    _check_numbers("train_step", stats, ("loss", "grad_norm", "lr", "tokens"))
    if sched.last_epoch != 1:
        fail("the scheduler moves once per optimizer step",
             mistake=f"scheduler stepped per micro-batch ({sched.last_epoch} times for one step)")
    full_loss = model(**{k: full[k] for k in ("input_ids", "attention_mask", "labels")}).loss
    if not isinstance(stats, dict) or not math.isclose(stats.get("loss", -1), full_loss.item(),
                                                       rel_tol=1e-5):
        fail("returns the mean loss over the whole batch", got=stats,
             expected={"loss": round(full_loss.item(), 5)})
    if stats.get("tokens") != n_total:
        fail("returns the supervised-token count N", got=stats.get("tokens"), expected=n_total)
    passed("returns the batch's mean loss and N; the scheduler moved once")

    twice, _, _ = _run_train_step(ex, model, micro, None, calls=2)
    if _max_diff({n: p.grad for n, p in twice.named_parameters()}, expected) > tol:
        fail("a second step starts from fresh gradients",
             mistake="gradients are not cleared at the start of a step: they keep adding up")
    passed("every step starts from zero gradients")

    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.double())
                                                 for g in expected.values()])).item()
    clipped_model, _, stats = _run_train_step(ex, model, micro, norm / 10)
    want = {n: g * (norm / 10) / (norm + 1e-6) for n, g in expected.items()}
    if _max_diff({n: p.grad for n, p in clipped_model.named_parameters()}, want) > tol:
        fail("clipping scales the accumulated gradient to max_grad_norm",
             mistake="gradient clipped before accumulation ends: clip once, after the last "
                     "micro-batch")
    if not math.isclose(stats["grad_norm"], norm, rel_tol=1e-3):  # float32 norm of 1M values
        fail("grad_norm is the norm before clipping", got=stats["grad_norm"], expected=norm)
    passed(f"clipped once after accumulation; grad_norm {norm:.3f} reported before clipping")


# --- evaluate ------------------------------------------------------------------------------------
def check_evaluate(ex: ModuleType, model: torch.nn.Module, examples: Sequence[dict],
                   tokenizer) -> None:
    pad = tokenizer.pad_token_id
    picked = sorted(examples[:30], key=lambda e: len(e["input_ids"]))
    batches = [_collate(picked[:8], pad), _collate(picked[-1:], pad)]
    model = copy.deepcopy(model)
    for layer in getattr(getattr(model, "model", None), "layers", []):
        layer.self_attn.attention_dropout = 0.3  # dropout on: eval mode must turn it off
    model.train()
    seen = []
    hook = model.register_forward_pre_hook(
        lambda m, args: seen.append((torch.is_grad_enabled(), m.training)))
    try:
        got = call(ex.evaluate, model, batches, what="evaluate(model, batches)")
    finally:
        hook.remove()
    if any(g for g, _ in seen):
        fail("the forward passes run without building a graph",
             mistake="evaluation without torch.no_grad(): every activation is kept for a "
                     "backward that never comes")
    if any(t for _, t in seen):
        fail("the forward passes run in eval mode",
             mistake="evaluation in train mode: dropout stays on and the loss is noisy")
    if not model.training:
        fail("the model is back in train mode afterwards",
             mistake="evaluate leaves the model in eval mode: training goes on without dropout")
    _check_numbers("evaluate", got, ("loss", "perplexity", "tokens"))
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        sums = [reference(**b).loss.item() * _count(b["labels"]) for b in batches]
    counts = [_count(b["labels"]) for b in batches]
    want = sum(sums) / sum(counts)
    if not isinstance(got, dict) or not math.isclose(got.get("loss", -1), want, rel_tol=1e-5):
        means = sum(s / c for s, c in zip(sums, counts)) / len(batches)
        mistake = ("mean of per-batch means: a one-sequence batch weighs as much as a full one"
                   if isinstance(got, dict) and math.isclose(got.get("loss", -1), means,
                                                             rel_tol=1e-5) else None)
        fail("loss = all summed token losses / all supervised tokens", mistake=mistake,
             got=got, expected={"loss": want})
    if not math.isclose(got.get("perplexity", -1), math.exp(want), rel_tol=1e-5):
        fail("perplexity = exp(loss)", got=got.get("perplexity"), expected=math.exp(want))
    passed(f"evaluate: no_grad, eval mode (restored after), token-weighted loss {want:.4f}, "
           f"perplexity {math.exp(want):.1f}")


# --- early stopping ------------------------------------------------------------------------------
def check_early_stopping(ex: ModuleType) -> None:
    cases = [("still improving now and then", 2, 0.0, [3.0, 3.1, 2.0, 2.1, 1.9, 2.0],
              [False] * 6),
             ("a plateau", 2, 0.0, [3.0, 2.0, 2.0, 2.0], [False, False, False, True]),
             ("improvements below min_delta", 1, 0.5, [3.0, 2.8], [False, True]),
             ("no patience", None, 0.0, [1.0, 2.0, 3.0], [False] * 3)]
    for label, patience, delta, losses, want in cases:
        stopper = call(ex.EarlyStopping, patience, delta, what="EarlyStopping(patience, delta)")
        got = [bool(call(stopper.step, x, what="EarlyStopping.step")) for x in losses]
        if got != want:
            mistake = None
            if label.startswith("still"):
                mistake = ("the count of bad evaluations never resets after an improvement")
            elif label == "a plateau" and not any(got):
                mistake = "a loss equal to the best counted as an improvement (use <, not <=)"
            fail(f"EarlyStopping({patience}, {delta}) on {losses}: {label}", mistake=mistake,
                 got=got, expected=want)
    passed("EarlyStopping: stops after `patience` evaluations without improvement, resets on "
           "improvement, honours min_delta")


# --- checkpoints ---------------------------------------------------------------------------------
def _optimizer(model):
    """Plain AdamW and a linear warmup (not the learner's: one TODO per check)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 3))


def _state(ex, model):
    model = copy.deepcopy(model)
    opt, sched = _optimizer(model)
    model.train()
    ids = torch.arange(1, 17).view(2, 8)
    for _ in range(2):  # a couple of real steps: AdamW has moments, the scheduler moved
        opt.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        sched.step()
    return model, opt, sched


def check_save_checkpoint(ex: ModuleType, model: torch.nn.Module) -> None:
    model, opt, sched = _state(ex, model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run" / "checkpoint.pt"
        call(ex.save_checkpoint, path, model, opt, sched, 2, {"note": 1},
             what="save_checkpoint(path, model, optimizer, scheduler, 2, extra)")
        state = torch.load(path, map_location="cpu", weights_only=False)
        missing = [k for k in ("model", "optimizer", "scheduler", "rng", "step", "extra")
                   if k not in state]
        if missing:
            fail("the checkpoint holds model, optimizer, scheduler, rng, step and extra",
                 mistake=f"missing {missing}: a resumed run could not continue exactly")
        if state["step"] != 2 or state["optimizer"]["state"] == {}:
            fail("step and AdamW's state are saved", got=(state["step"], "optimizer state"))
        def crash(obj, f, *args, **kwargs):
            with open(f, "wb") as fh:
                fh.write(b"truncated")
            raise OSError("simulated crash while writing")

        with injected(ex, "torch", save=crash):   # in the learner's process, not in this one
            try:
                ex.save_checkpoint(path, model, opt, sched, 3)
            except OSError:
                pass
        try:
            survived = torch.load(path, map_location="cpu", weights_only=False)["step"] == 2
        except Exception:  # noqa: BLE001
            survived = False
        if not survived:
            fail("a crash while writing leaves the previous checkpoint intact",
                 mistake="checkpoint not written atomically: save to a temporary file, then "
                         "os.replace it over the old one")
    passed("save_checkpoint: everything a resume needs, written atomically")


def check_load_checkpoint(ex: ModuleType, model: torch.nn.Module) -> None:
    trained, opt, sched = _state(ex, model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.pt"
        torch.manual_seed(7)
        random.seed(7)
        np.random.seed(7)
        rng = {"python": random.getstate(), "numpy": np.random.get_state(),
               "torch": torch.get_rng_state()}
        torch.save({"model": trained.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "rng": rng, "step": 2,
                    "extra": {"note": 1}}, path)
        draws = (torch.rand(2), random.random())
        fresh = copy.deepcopy(model)
        fresh_opt, fresh_sched = _optimizer(fresh)
        torch.manual_seed(0)
        got = call(ex.load_checkpoint, path, fresh, fresh_opt, fresh_sched,
                   what="load_checkpoint(path, model, optimizer, scheduler)")
        if any(not torch.equal(p, q) for p, q in zip(fresh.parameters(), trained.parameters())):
            fail("the model's weights are restored")
        if not fresh_opt.state_dict()["state"]:
            fail("the optimizer state is restored",
                 mistake="resume forgets the optimizer state: AdamW restarts with zero moments "
                         "and takes far too large steps")
        if fresh_sched.last_epoch != sched.last_epoch:
            fail("the scheduler is restored",
                 mistake="resume forgets the scheduler: the learning rate restarts its warmup",
                 got=fresh_sched.last_epoch, expected=sched.last_epoch)
        if not torch.equal(torch.rand(2), draws[0]) or random.random() != draws[1]:
            fail("the random number generators are restored",
                 mistake="resume forgets the RNG states: dropout and shuffling differ from the "
                         "uninterrupted run")
        if not isinstance(got, dict) or got.get("step") != 2 or got.get("extra") != {"note": 1}:
            fail("returns {'step': 2, 'extra': {...}}", got=got)
    passed("load_checkpoint: weights, AdamW state, scheduler and RNG states restored")


# --- the training run ----------------------------------------------------------------------------
def check_run(result, min_drop: float = 0.0) -> None:
    """The notebook's SFT run: finite losses and a validation loss that went down."""
    evals = [e["loss"] for e in result.evals]
    if len(evals) < 2 or not all(math.isfinite(x) for x in evals):
        fail("the run evaluated at least twice with finite losses", got=evals)
    if not evals[-1] < evals[0] - min_drop:
        fail("fine-tuning lowered the validation loss", got=evals[-1], expected=f"< {evals[0]}")
    passed(f"validation loss {evals[0]:.3f} -> {evals[-1]:.3f} in {result.steps} steps")


def tmp_dir(prefix: str = "sft-") -> str:
    """A fresh folder for a throw-away run."""
    return tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("TMPDIR"))
