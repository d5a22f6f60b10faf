"""Hidden tests of step 3 (the SFT loop), one function per graded cell, named after its grade_id.

Each takes the learner's module `ex` and the reference module `ref`
(`load_reference("step3_sft", "sft_exercise")`), runs fixed and seeded cases on the learner's
function and the reference side by side (same model copy, same batches, same RNG), and raises
HiddenTestFailure (an AssertionError) whose first line is public: the kinds of case that
failed. The rest (instructors only) gives the numbers. An unfinished TODO's NotImplementedError
passes through, so the notebook shows its hint.

One function at a time: the learner's function runs with the reference's helpers (the module's
`token_loss_sum`, `supervised_tokens`, `all_reduce_*`, `rng_state` ... stay the given ones), so
one bug costs points in one test only.

In the notebook a hidden cell is then two lines:

    from course.grading import load_reference
    load_reference("step3_sft", "hidden_checks").train_step_hidden(
        ex, load_reference("step3_sft", "sft_exercise"))

tests/test_step3_wrong.py proves that every wrong implementation in tests/wrong/step3_sft/
fails the checks its EXPECT_LOSE names, and that the reference passes them all.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import random
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import torch

from course.grading import HiddenReport, injected, patched

STEP = "step3_sft"
TOL = 1e-6      # losses, gradients and weights: the same float32 ops in a correct implementation
LR_TOL = 1e-12  # the schedule is a formula of Python floats




def _seeded(fn: Callable) -> Callable:
    """Run a hidden test with one thread and its own RNG states (the notebook's are kept)."""
    @functools.wraps(fn)
    def wrapper(ex: ModuleType, ref: ModuleType) -> None:
        threads = torch.get_num_threads()
        py, npy = random.getstate(), np.random.get_state()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                fn(ex, ref)
        finally:
            torch.set_num_threads(threads)
            random.setstate(py)
            np.random.set_state(npy)
    return wrapper


def _close(a: float, b: float, tol: float = TOL) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol) or (math.isnan(a) and math.isnan(b))


def _max_diff(a: torch.nn.Module, b: torch.nn.Module, grads: bool = False) -> float:
    worst = 0.0
    for p, q in zip(a.parameters(), b.parameters()):
        x, y = (p.grad, q.grad) if grads else (p, q)
        if x is None or y is None:
            if (x is None) != (y is None):
                return math.inf
            continue
        worst = max(worst, (x.detach() - y.detach()).abs().max().item())
    return worst


# --- models and batches for the cases (built once) ----------------------------------------------
@functools.lru_cache(maxsize=1)
def _tokenizer():
    from course.models import load_tokenizer
    return load_tokenizer()


@functools.lru_cache(maxsize=1)
def _tiny_model() -> torch.nn.Module:
    """A small random Qwen2 with the course's vocabulary: fast, and every kind of parameter
    (embedding tied to the output, q/k/v biases, RMS norms)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = _tokenizer()
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = Qwen2ForCausalLM(config)
    return model.float().train()


def _model(dropout: float = 0.0, frozen: tuple[str, ...] = ()) -> torch.nn.Module:
    model = copy.deepcopy(_tiny_model())
    model.config.attention_dropout = dropout
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = dropout
    for name, p in model.named_parameters():
        if any(f in name for f in frozen):
            p.requires_grad_(False)
    return model


@functools.lru_cache(maxsize=1)
def _examples() -> list[dict]:
    """24 short validation conversations, tokenized with step 2's labels (the reference)."""
    from course.data import load_split
    from course.grading import load_reference

    ref = load_reference(STEP, "sft_exercise")
    rows = load_split("validation").select(range(80))
    kept = ref.tokenize_split(rows, _tokenizer(), 256)
    return sorted(kept, key=lambda e: len(e["input_ids"]))[:24]


def _batches(ref: ModuleType, sizes: list[int], start: int = 0, cut: int | None = None
             ) -> list[dict[str, torch.Tensor]]:
    """Micro-batches of the given sizes from consecutive examples (unequal lengths and token
    counts); `cut` truncates every example (fewer supervised tokens, some none at all)."""
    examples = _examples()
    out, i = [], start
    pad = _tokenizer().pad_token_id
    for size in sizes:
        chunk = [examples[(i + k) % len(examples)] for k in range(size)]
        if cut is not None:
            chunk = [{k: v[:cut] for k, v in e.items()} for e in chunk]
        out.append(ref.collate(chunk, pad))
        i += size
    return out


def _no_labels(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(batch, labels=torch.full_like(batch["labels"], -100))


# --- total_steps ---------------------------------------------------------------------------------
def total_steps_hidden(ex: ModuleType, ref: ModuleType) -> None:
    report = HiddenReport("total_steps_hidden")
    cases = [("max_steps set", dict(max_steps=7, num_epochs=3.0), 1000, 1),
             ("one epoch, no accumulation", dict(batch_size=16), 1000, 1),
             ("gradient accumulation", dict(batch_size=8, grad_accum_steps=4), 1000, 1),
             ("two processes", dict(batch_size=8, grad_accum_steps=2), 1000, 2),
             ("fractional epochs", dict(batch_size=10, num_epochs=2.5), 95, 1),
             ("several epochs, incomplete last batch", dict(batch_size=7, num_epochs=3.0), 50, 1),
             ("exactly one batch", dict(batch_size=4, grad_accum_steps=2), 8, 1),
             ("tiny fraction of an epoch", dict(batch_size=4, num_epochs=0.01), 40, 1)]
    for label, kw, n, world in cases:
        with report.case(label):
            want = ref.FinetuneConfig(**kw).total_steps(n, world)
            got = ex.FinetuneConfig(**kw).total_steps(n, world)
            report.expect(got == want, label, f"got {got!r}, expected {want}")
    with report.case("fewer examples than one batch"):
        try:
            got = ex.FinetuneConfig(batch_size=8, grad_accum_steps=2).total_steps(10, 1)
        except ValueError:
            got = "ValueError"
        report.expect(got == "ValueError", "fewer examples than one batch",
                      f"returned {got!r} instead of raising ValueError")
    report.finish()


# --- param_groups --------------------------------------------------------------------------------
def param_groups_hidden(ex: ModuleType, ref: ModuleType) -> None:
    report = HiddenReport("param_groups_hidden")
    models = [("all parameters trainable", _model(), 0.1),
              ("embeddings and norms frozen", _model(frozen=("embed_tokens", "norm")), 0.05),
              ("only attention trainable", _model(frozen=("mlp", "embed", "norm")), 0.0)]
    for label, model, wd in models:
        with report.case(label):
            names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
            want = ref.param_groups(model, wd)
            got = ex.param_groups(model, wd)
            ok = isinstance(got, list) and len(got) == 2
            report.expect(ok, f"two groups ({label})", f"got {type(got).__name__} "
                          f"of length {len(got) if hasattr(got, '__len__') else '?'}")
            if not ok:
                continue
            for i, what in enumerate(("decayed", "not decayed")):
                g, w = got[i], want[i]
                got_names = [names.get(id(p), "?") for p in g.get("params", [])]
                want_names = [names[id(p)] for p in w["params"]]
                report.expect(got_names == want_names, f"{what} parameters ({label})",
                              f"got {got_names}, expected {want_names}")
                report.expect(g.get("weight_decay") == w["weight_decay"],
                              f"{what} weight_decay ({label})",
                              f"got {g.get('weight_decay')!r}, expected {w['weight_decay']}")
    report.finish()


# --- lr_lambda -----------------------------------------------------------------------------------
def lr_lambda_hidden(ex: ModuleType, ref: ModuleType) -> None:
    report = HiddenReport("lr_lambda_hidden")
    rng = random.Random(6)
    settings = [("warmup then cosine", 10, 100), ("no warmup", 0, 50), ("warmup only", 20, 20),
                ("one step of warmup", 1, 2), ("long run", 150, 3000)]
    settings += [("random schedule", w, w + rng.randint(1, 400))
                 for w in (rng.randint(0, 60) for _ in range(5))]
    for label, warmup, total in settings:
        with report.case(label):
            steps = sorted({0, 1, warmup - 1, warmup, warmup + 1, (warmup + total) // 2,
                            total - 1, total, total + 5} | set(range(0, total + 1, 7)))
            bad = []
            for s in (s for s in steps if s >= 0):
                got = ex.lr_lambda(s, warmup, total)
                want = ref.lr_lambda(s, warmup, total)
                if not _close(float(got), want, LR_TOL):
                    bad.append(f"step {s}: {got!r} vs {want}")
            kind = ("warmup" if any(int(b.split()[1][:-1]) < warmup for b in bad) else
                    "cosine decay") + f" ({label})"
            report.expect(not bad, kind, "; ".join(bad[:4]))
    report.finish()


# --- train_step ----------------------------------------------------------------------------------
def _fake_world(module: ModuleType, processes: int) -> contextlib.AbstractContextManager:
    """`processes` identical processes: every all-reduced sum is `processes` times this one's."""
    def reduce_sum(value):
        return torch.as_tensor(value, dtype=torch.float64).detach().clone() * processes

    def reduce_grads(model):
        for p in model.parameters():
            if p.grad is not None:
                p.grad.mul_(processes)
    return patched(module, all_reduce_sum=reduce_sum, all_reduce_gradients=reduce_grads)


def _run_steps(module: ModuleType, ref: ModuleType, steps: list[list[dict]], clip, lr: float,
               dropout: float, processes: int, start_eval: bool
               ) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any, list[dict]]:
    model = _model(dropout)
    if start_eval:
        model.eval()
    cfg = ref.FinetuneConfig(learning_rate=lr, weight_decay=0.1)
    opt = ref.make_optimizer(model, cfg)
    sched = ref.make_scheduler(opt, warmup_steps=1, total_steps=len(steps) + 2)
    stats = []
    given = patched(module, token_loss_sum=ref.token_loss_sum,
                    supervised_tokens=ref.supervised_tokens)
    with torch.random.fork_rng(devices=[]), _fake_world(module, processes), given:
        torch.manual_seed(11)
        for micro in steps:
            stats.append(module.train_step(model, opt, sched, micro, clip))
    return model, opt, sched, stats


@_seeded
def train_step_hidden(ex: ModuleType, ref: ModuleType) -> None:
    report = HiddenReport("train_step_hidden")
    plain = [_batches(ref, [4])]
    accum = [_batches(ref, [3, 1, 2], 0), _batches(ref, [1, 4, 1], 6), _batches(ref, [2, 2, 2], 12)]
    cases = [
        ("one micro-batch", plain, None, 1e-3, 0.0, 1, False),
        ("three steps of 3 unequal micro-batches", accum, None, 1e-3, 0.0, 1, False),
        ("accumulation with clipping", accum, 0.5, 1e-3, 0.0, 1, False),
        ("accumulation with a micro-batch without labels",
         [[_batches(ref, [2])[0], _no_labels(_batches(ref, [2], 2)[0]), _batches(ref, [1], 4)[0]]],
         0.5, 1e-3, 0.0, 1, False),
        ("a batch without any label", [[_no_labels(b) for b in _batches(ref, [2, 2])]], 1.0,
         1e-3, 0.0, 1, False),
        ("as one of 2 processes", accum[:2], 1.0, 1e-3, 0.0, 2, False),
        ("model handed over in eval mode, dropout on", accum[:2], 1.0, 1e-3, 0.1, 1, True),
    ]
    for label, steps, clip, lr, dropout, processes, start_eval in cases:
        with report.case(label):
            want_model, want_opt, want_sched, want = _run_steps(
                ref, ref, steps, clip, lr, dropout, processes, start_eval)
            got_model, got_opt, got_sched, got = _run_steps(
                ex, ref, steps, clip, lr, dropout, processes, start_eval)
            for k, (g, w) in enumerate(zip(got, want), 1):
                g = g if isinstance(g, dict) else {}
                for key in ("loss", "grad_norm", "lr", "tokens"):
                    value = g.get(key)
                    ok = isinstance(value, (int, float)) and _close(float(value), float(w[key]),
                                                                     1e-5)
                    report.expect(ok, f"returned {key} ({label})",
                                  f"step {k}: got {value!r}, expected {w[key]}")
            report.expect(got_sched.last_epoch == want_sched.last_epoch,
                          f"scheduler steps ({label})",
                          f"scheduler stepped {got_sched.last_epoch} times for {len(steps)} "
                          f"optimizer steps")
            d = _max_diff(got_model, want_model, grads=True)
            report.expect(d <= 1e-5, f"gradients ({label})", f"max |difference| {d:.3g}")
            d = _max_diff(got_model, want_model)
            report.expect(d <= 1e-5, f"weights after the steps ({label})",
                          f"max |difference| {d:.3g}")
            steps_done = {s.get("step", torch.tensor(0)).item() for s in got_opt.state.values()}
            report.expect(steps_done <= {float(len(steps))}, f"optimizer steps ({label})",
                          f"AdamW step counts {sorted(steps_done)}, expected {len(steps)}")
    report.finish()


# --- evaluate ------------------------------------------------------------------------------------
@_seeded
def evaluate_hidden(ex: ModuleType, ref: ModuleType) -> None:
    report = HiddenReport("evaluate_hidden")
    batches = _batches(ref, [3, 1, 5, 2])
    cases = [("unequal batches", batches, True, 0.0), ("one batch", batches[:1], True, 0.0),
             ("model in eval mode before", batches, False, 0.0),
             ("dropout on (must be off)", batches, True, 0.2),
             ("a batch without labels", [batches[0], _no_labels(batches[1])], True, 0.0)]
    for label, data, training, dropout in cases:
        with report.case(label):
            model = _model(dropout).train(training)
            want = ref.evaluate(copy.deepcopy(model).train(training), data)
            seen: list[tuple[bool, bool]] = []
            hook = model.register_forward_pre_hook(
                lambda m, args: seen.append((torch.is_grad_enabled(), m.training)))
            before = copy.deepcopy(model)
            try:
                with patched(ex, token_loss_sum=ref.token_loss_sum,
                             supervised_tokens=ref.supervised_tokens):
                    got = ex.evaluate(model, data)
            finally:
                hook.remove()
            got = got if isinstance(got, dict) else {}
            for key in ("loss", "perplexity", "tokens"):
                value = got.get(key)
                ok = isinstance(value, (int, float)) and _close(float(value), float(want[key]),
                                                                 1e-5)
                report.expect(ok, f"{key} ({label})", f"got {value!r}, expected {want[key]}")
            report.expect(bool(seen) and not any(g for g, _ in seen),
                          f"no gradients while evaluating ({label})",
                          "the forward ran with gradients enabled (no torch.no_grad())")
            report.expect(bool(seen) and not any(t for _, t in seen),
                          f"eval mode while evaluating ({label})",
                          "the forward ran in train mode (dropout on)")
            report.expect(model.training == training, f"mode restored afterwards ({label})",
                          f"model.training is {model.training}, was {training}")
            report.expect(all(p.grad is None for p in model.parameters()),
                          f"no gradients left behind ({label})", "parameters have .grad")
            report.expect(_max_diff(model, before) == 0.0, f"weights untouched ({label})")
    report.finish()


# --- early stopping ------------------------------------------------------------------------------
def early_stopping_hidden(ex: ModuleType, ref: ModuleType) -> None:
    report = HiddenReport("early_stopping_hidden")
    rng = random.Random(7)
    sequences = [
        ("steady improvement", 2, 0.0, [3.0, 2.5, 2.0, 1.8, 1.7]),
        ("plateau", 2, 0.0, [3.0, 2.0, 2.0, 2.0, 2.0]),
        ("worse then better", 3, 0.0, [3.0, 2.0, 2.5, 2.6, 1.9, 2.2, 2.3, 2.4]),
        ("improvements smaller than min_delta", 2, 0.1, [3.0, 2.95, 2.9, 2.85]),
        ("patience 1", 1, 0.0, [2.0, 1.0, 1.5]),
        ("no patience: never stops", None, 0.0, [1.0, 2.0, 3.0, 4.0, 5.0]),
        ("NaN loss", 2, 0.0, [2.0, float("nan"), float("nan")]),
    ]
    sequences += [("random losses", rng.randint(1, 4), rng.choice([0.0, 0.05]),
                   [round(rng.uniform(1.0, 3.0), 2) for _ in range(12)]) for _ in range(6)]
    for label, patience, delta, losses in sequences:
        with report.case(label):
            want_stopper = ref.EarlyStopping(patience=patience, min_delta=delta)
            got_stopper = ex.EarlyStopping(patience=patience, min_delta=delta)
            want = [want_stopper.step(x) for x in losses]
            got = [bool(got_stopper.step(x)) for x in losses]
            report.expect(got == want, f"stop decisions ({label})",
                          f"losses {losses}: got {got}, expected {want}")
            report.expect(_close(float(got_stopper.best), want_stopper.best),
                          f"best loss ({label})", f"got {got_stopper.best}, "
                          f"expected {want_stopper.best}")
    report.finish()


# --- checkpoints ---------------------------------------------------------------------------------
def _trained_state(ref: ModuleType, steps: int = 2):
    """A model, optimizer and scheduler after a few reference steps (AdamW has moments)."""
    model = _model()
    opt = ref.make_optimizer(model, ref.FinetuneConfig(learning_rate=1e-3))
    sched = ref.make_scheduler(opt, 1, 10)
    for k in range(steps):
        ref.train_step(model, opt, sched, _batches(ref, [2], 2 * k), 1.0)
    return model, opt, sched


def _same_state(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.shape == b.shape and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return a == b


@_seeded
def save_checkpoint_hidden(ex: ModuleType, ref: ModuleType) -> None:
    report = HiddenReport("save_checkpoint_hidden")
    model, opt, sched = _trained_state(ref)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sub" / "checkpoint.pt"
        with report.case("what a checkpoint holds"):
            torch.manual_seed(5)
            random.seed(5)
            np.random.seed(5)
            expected_rng = ref.rng_state()
            returned = ex.save_checkpoint(path, model, opt, sched, 7, {"note": "x"})
            state = torch.load(path, map_location="cpu", weights_only=False)
            report.expect(Path(returned) == path, "returns the path", f"got {returned!r}")
            want = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "step": 7, "extra": {"note": "x"},
                    "rng": expected_rng}
            report.expect(isinstance(state, dict), "a dict", f"got {type(state).__name__}")
            for key, value in want.items():
                ok = key in state and _same_state(state[key], value)
                report.expect(ok, f"{key} saved", f"missing or different {key!r}")
            leftovers = sorted(p.name for p in path.parent.iterdir() if p != path)
            report.expect(not leftovers, "no temporary file left", f"found {leftovers}")
        with report.case("extra defaults to {}"):
            ex.save_checkpoint(path, model, opt, sched, 1)
            state = torch.load(path, map_location="cpu", weights_only=False)
            report.expect(state.get("extra") == {}, "extra defaults to {}",
                          f"got {state.get('extra')!r}")
        with report.case("a crash while writing"):
            ref.save_checkpoint(path, model, opt, sched, 3)
            def crash(obj, f, *args, **kwargs):
                with open(f, "wb") as fh:  # half a file, then the process dies
                    fh.write(b"PK\x03\x04 truncated")
                raise OSError("disk full (simulated)")

            with injected(ex, "torch", save=crash):   # where the learner's code runs
                try:
                    ex.save_checkpoint(path, model, opt, sched, 4)
                except OSError:
                    pass
            try:
                step = torch.load(path, map_location="cpu", weights_only=False)["step"]
            except Exception as err:  # noqa: BLE001
                step = f"unreadable ({type(err).__name__})"
            report.expect(step == 3, "the previous checkpoint survives a crash while writing",
                          f"after the crash the checkpoint is {step!r}: write to a temporary "
                          f"file, then os.replace")
    report.finish()


@_seeded
def load_checkpoint_hidden(ex: ModuleType, ref: ModuleType) -> None:
    report = HiddenReport("load_checkpoint_hidden")
    model, opt, sched = _trained_state(ref, 3)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.pt"
        torch.manual_seed(21)
        random.seed(21)
        np.random.seed(21)
        ref.save_checkpoint(path, model, opt, sched, 3, {"config": {"a": 1}, "more": [1, 2]})
        expected_draws = (torch.rand(3), random.random(), np.random.rand())
        with report.case("resume into a fresh model"):
            fresh = _model()
            fresh_opt = ref.make_optimizer(fresh, ref.FinetuneConfig(learning_rate=1e-3))
            fresh_sched = ref.make_scheduler(fresh_opt, 1, 10)
            torch.manual_seed(99)
            random.seed(99)
            np.random.seed(99)
            got = ex.load_checkpoint(path, fresh, fresh_opt, fresh_sched)
            draws = (torch.rand(3), random.random(), np.random.rand())
            report.expect(isinstance(got, dict) and got.get("step") == 3, "returns the step",
                          f"got {got!r}")
            report.expect(isinstance(got, dict) and got.get("extra") == {"config": {"a": 1},
                                                                        "more": [1, 2]},
                          "returns extra", f"got {got!r}")
            report.expect(_max_diff(fresh, model) == 0.0, "model weights restored")
            report.expect(_same_state(fresh_opt.state_dict(), opt.state_dict()),
                          "optimizer state restored (AdamW moments and step counts)")
            report.expect(_same_state(fresh_sched.state_dict(), sched.state_dict()),
                          "scheduler restored",
                          f"last_epoch {fresh_sched.last_epoch}, expected {sched.last_epoch}")
            report.expect(torch.equal(draws[0], expected_draws[0]), "torch RNG restored")
            report.expect(draws[1] == expected_draws[1], "Python RNG restored")
            report.expect(draws[2] == expected_draws[2], "NumPy RNG restored")
        with report.case("training continues identically"):
            batch = _batches(ref, [2], 10)
            ref.train_step(model, opt, sched, batch, 1.0)
            ref.train_step(fresh, fresh_opt, fresh_sched, batch, 1.0)
            report.expect(_max_diff(fresh, model) <= 1e-7, "next step identical",
                          f"max |difference| {_max_diff(fresh, model):.3g}")
    report.finish()


HIDDEN_CHECKS = {f.__name__: f for f in (
    total_steps_hidden, param_groups_hidden, lr_lambda_hidden, train_step_hidden,
    evaluate_hidden, early_stopping_hidden, save_checkpoint_hidden, load_checkpoint_hidden)}
