"""Hidden tests of step 4 (LoRA), one function per graded cell, named after its grade_id.

Each takes the learner's module `ex` and the reference module `ref`
(`load_reference("step4_lora", "lora_exercise")`), runs fixed and seeded random cases, and
raises HiddenTestFailure (an AssertionError) whose first line is public: the kinds of case that
failed. The rest (instructors only) names the settings and the numbers. An unfinished TODO's
NotImplementedError passes through, so the notebook shows its hint.

One function at a time: a method is tested on an instance of the learner's class holding the
reference's state (built by the reference __init__), with the methods it calls replaced by plain
stand-ins; inject_lora, adapter_state_dict and merge_and_unload are tested with a stand-in LoRA
layer (course.checks.step4_lora.StandInLoRA) in place of the learner's class, so one bug costs
points in one test only. The learner's attribute names are the seam (docstring of LoRALinear:
base_layer, lora_A, lora_B, lora_dropout, scaling, merged, r, alpha, use_rslora).

The learner's layers and models are made and changed where the learner's code runs (in trusted
grading: the jailed worker, via course.grading.beside and the probes of course.checks.step4_lora)
and read back as plain values; the same steps run here on the reference's layers give the
expected values. Nothing of the reference is sent to the learner's code except, where a test
isolates one function, single reference functions (find_target_modules, matches_target).

In the notebook a hidden cell is then two lines:

    from course.grading import load_reference
    load_reference("step4_lora", "hidden_checks").lora_linear_forward_hidden(
        ex, load_reference("step4_lora", "lora_exercise"))

tests/test_step4_wrong.py proves that every wrong implementation in tests/wrong/step4_lora/
fails the checks its EXPECT_LOSE names, and that the reference passes them all.
"""
from __future__ import annotations

import copy
import functools
import math
import random
import warnings
from types import ModuleType
from typing import Callable

import torch
from torch import nn

from course.checks import step4_lora as probes
from course.checks.step4_lora import (NestedModel, StandInLoRA, lora_state, model_output,
                                      shared_layer_model, tiny_qwen)
from course.grading import HiddenReport, beside, compare_with_reference, patched, short
from course.lora_io import dropout_p

ATOL = RTOL = 1e-5   # hand-written and reference code may order float operations differently
WEIGHT_TOL = 1e-6    # merged weights: one addition, the same in every correct implementation




def _close(a: torch.Tensor, b: torch.Tensor, tol: float = ATOL) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=tol, atol=tol)


def _diff(a: torch.Tensor, b: torch.Tensor) -> str:
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)}, expected {tuple(b.shape)}"
    d = (a - b).abs().max().item()
    ratio = (a.norm() / b.norm()).item() if b.norm() > 0 else float("nan")
    return f"max |difference| {d:.3g} (norm ratio got/expected {ratio:.4g})"


def _seeded(fn: Callable) -> Callable:
    """Run a hidden test with its own torch RNG state (the notebook's is left as it was)."""
    def wrapper(ex: ModuleType, ref: ModuleType) -> None:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "already merged" and the like: not graded
            torch.manual_seed(0)
            fn(ex, ref)
    wrapper.__name__ = wrapper.__qualname__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


# --- layers and models for the cases -------------------------------------------------------------
def _layer_cases(seed: int, n_random: int) -> list[dict]:
    """Fixed layer settings, then seeded random ones. alpha != r and alpha != sqrt(r) everywhere,
    so a missing or wrong scaling always shows."""
    cases = [
        dict(label="kaiming init 16->12 r=4", d_in=16, d_out=12, r=4, alpha=8.0),
        dict(label="gaussian init without bias", d_in=64, d_out=32, r=8, alpha=16.0, bias=False,
             init="gaussian"),
        dict(label="rsLoRA", d_in=24, d_out=40, r=4, alpha=8.0, use_rslora=True),
        dict(label="full rank with dropout", d_in=20, d_out=20, r=20, alpha=5.0, dropout=0.3),
        dict(label="float64 base", d_in=12, d_out=18, r=3, alpha=12.0, dtype=torch.float64),
    ]
    rng = random.Random(seed)
    for i in range(n_random):
        d_in, d_out = rng.randint(2, 48), rng.randint(2, 48)
        r = rng.randint(2, min(d_in, d_out))
        cases.append(dict(label=f"random layer {i + 1}", d_in=d_in, d_out=d_out, r=r,
                          alpha=rng.choice([0.5, 3.0, 7.0, 2.0 * r + 1]),
                          use_rslora=rng.random() < 0.4, bias=rng.random() < 0.6,
                          dropout=rng.choice([0.0, 0.1, 0.5]),
                          init=rng.choice(["kaiming", "gaussian"])))
    return cases


def _settings(case: dict) -> dict:
    return {k: case.get(k, d) for k, d in (("dropout", 0.0), ("use_rslora", False),
                                           ("init", "kaiming"))}


def _base(case: dict, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(case["d_in"], case["d_out"], bias=case.get("bias", True),
                     dtype=case.get("dtype", torch.float32))


def _shell(ex: ModuleType, ref: ModuleType, case: dict, seed: int = 0,
           stand_ins: tuple[str, ...] = ()) -> tuple:
    """(learner's layer, reference's layer) holding the same state: the reference __init__'s
    base_layer and settings, random A and non-zero B. The learner's layer is an instance of the
    learner's class built where the learner's code runs, without the learner's __init__ if that
    fails (probes.shell_of); `stand_ins` replaces those of its methods by plain versions."""
    expected = ref.LoRALinear(_base(case, seed), case["r"], case["alpha"], **_settings(case))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for part in (expected.lora_A, expected.lora_B):
            part.weight.copy_(torch.randn(part.weight.shape, generator=g) * 0.5)
    layer = beside(ex, probes.shell_of, ex.LoRALinear, lora_state(expected), _settings(case),
                   stand_ins)
    return layer, expected.eval()


def _input(case: dict, seed: int, shape: tuple[int, ...] = (3, 5)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, case["d_in"], generator=g).to(case.get("dtype", torch.float32))


# --- LoRALinear ----------------------------------------------------------------------------------
@_seeded
def lora_linear_init_hidden(ex: ModuleType, ref: ModuleType) -> None:
    """LoRALinear.__init__: frozen base kept as is, shapes, zero B, A's init, scaling, dropout
    on the LoRA path, exactly A and B trainable, merged False; bad settings rejected."""
    report = HiddenReport("lora_linear_init")
    for case in _layer_cases(seed=41, n_random=5):
        with report.case(case["label"]):
            _check_init(report, ex, ref, case)
    for label, make, error in (
            ("rank 0", lambda: ex.LoRALinear(nn.Linear(8, 8), 0, 4), ValueError),
            ("rank above min(in, out)", lambda: ex.LoRALinear(nn.Linear(8, 3), 4, 8),
             ValueError),
            ("not an nn.Linear", lambda: ex.LoRALinear(nn.Conv1d(4, 4, 1), 2, 4), TypeError)):
        with report.case(label):
            try:
                make()
            except error:
                report.expect(True, label)
            else:
                report.expect(False, f"{label} accepted", f"expected {error.__name__}")
    report.finish()


def _check_init(report: HiddenReport, ex: ModuleType, ref: ModuleType, case: dict) -> None:
    d_in, d_out, r, alpha = case["d_in"], case["d_out"], case["r"], case["alpha"]
    settings, dtype = _settings(case), case.get("dtype", torch.float32)
    base = _base(case)
    w0 = base.weight.detach().clone()
    layer = ex.LoRALinear(base, r, alpha, **settings)
    expected = ref.LoRALinear(_base(case), r, alpha, **settings)
    report.expect(layer.base_layer is base, "base_layer is the layer passed in",
                  f"got {type(layer.base_layer).__name__}, a copy or another module")
    report.expect(torch.equal(base.weight, w0), "base weight unchanged")
    report.expect(not base.weight.requires_grad, "base weight frozen")
    if base.bias is not None:
        report.expect(not base.bias.requires_grad, "base bias frozen",
                      "bias.requires_grad is True: freeze every parameter of the base layer")
    a, b = layer.lora_A.weight, layer.lora_B.weight
    if not (report.expect(tuple(a.shape) == (r, d_in), "lora_A.weight shape (r, in)",
                          f"got {tuple(a.shape)}, expected {(r, d_in)}")
            & report.expect(tuple(b.shape) == (d_out, r), "lora_B.weight shape (out, r)",
                            f"got {tuple(b.shape)}, expected {(d_out, r)}")):
        return
    report.expect(getattr(layer.lora_A, "bias", None) is None
                  and getattr(layer.lora_B, "bias", None) is None, "lora_A and lora_B bias-free")
    report.expect(a.dtype == dtype and b.dtype == dtype, "LoRA weights in the base dtype",
                  f"got {a.dtype}/{b.dtype}, base is {dtype}")
    trainable = sorted(n for n, p in layer.named_parameters() if p.requires_grad)
    report.expect(trainable == ["lora_A.weight", "lora_B.weight"],
                  "only lora_A and lora_B trainable",
                  f"{len(trainable)} trainable tensors: {trainable}")
    report.expect(torch.count_nonzero(b) == 0, "lora_B starts at zero",
                  f"{torch.count_nonzero(b).item()} of {b.numel()} entries of B are not zero")
    report.expect(torch.count_nonzero(a) > 0.9 * a.numel(), "lora_A starts random (not zero)",
                  "A is (mostly) zero: with A = B = 0 neither gets a gradient")
    bound = 1 / math.sqrt(d_in)
    a_abs = a.detach().abs()
    if settings["init"] == "kaiming":
        report.expect(a_abs.max() <= bound * (1 + 1e-5), "kaiming-uniform A within 1/sqrt(in)",
                      f"max |A| = {a_abs.max():.4g} > {bound:.4g}")
        if a.numel() >= 200:
            spread = a.detach().std().item() / (bound / math.sqrt(3))
            report.expect(0.75 < spread < 1.25, "kaiming-uniform A spread",
                          f"std(A) is {spread:.3g} x that of U(-1/sqrt(in), 1/sqrt(in))")
    elif a.numel() >= 200:
        spread = a.detach().std().item() * r
        report.expect(0.8 < spread < 1.2, "gaussian A with std 1/r", f"std(A) * r = {spread:.3g}")
    report.expect(math.isclose(float(layer.scaling), expected.scaling, rel_tol=1e-9),
                  "rsLoRA scaling alpha/sqrt(r)" if settings["use_rslora"]
                  else "scaling alpha/r",
                  f"got scaling {layer.scaling!r}, expected {expected.scaling!r} "
                  f"(alpha={alpha}, r={r}, use_rslora={settings['use_rslora']})")
    report.expect(layer.merged is False, "merged is False at init", f"got {layer.merged!r}")
    _check_dropout_module(report, layer.lora_dropout, settings["dropout"], dtype)
    # through the reference forward the layer equals its base layer (B = 0); B, a trainable
    # parameter used there, gets a gradient, and the frozen W none
    layer.eval()
    x = _input(case, seed=3)
    with torch.no_grad():
        y = ref.LoRALinear.forward(layer, x)
        report.expect(_close(y, base(x)), "layer equals the base layer at init",
                      _diff(y, base(x)))


def _check_dropout_module(report: HiddenReport, module: nn.Module, p: float, dtype) -> None:
    ones = torch.ones(4000, dtype=dtype)
    module.train()
    out = module(ones)
    if p == 0:
        report.expect(torch.equal(out, ones), "no dropout when dropout=0")
        return
    dropped = (out == 0).float().mean().item()
    kept = out[out != 0]
    report.expect(abs(dropped - p) < 0.05 and _close(kept, torch.full_like(kept, 1 / (1 - p))),
                  "lora_dropout drops with probability p (train mode)",
                  f"dropped {dropped:.3f} of the values, expected {p}")
    module.eval()
    report.expect(torch.equal(module(ones), ones), "lora_dropout off in eval mode")


@_seeded
def lora_linear_forward_hidden(ex: ModuleType, ref: ModuleType) -> None:
    """LoRALinear.forward on layers holding the reference's state: outputs and gradients (of A,
    B and the input) equal the reference's; dropout only on the LoRA input, off in eval mode;
    a merged layer returns base_layer(x) alone."""
    report = HiddenReport("lora_linear_forward")
    shapes = [(3, 5), (7,), (2, 2, 3)]
    for i, case in enumerate(_layer_cases(seed=42, n_random=4)):
        with report.case(case["label"]):
            layer, expected_layer = _shell(ex, ref, case, seed=i)
            x = _input(case, seed=i, shape=shapes[i % len(shapes)])
            got = beside(ex, probes.output_and_grads, layer, x)
            expected = probes.output_and_grads(expected_layer, x)
            for name, g, e in zip(("output", "grad of lora_A", "grad of lora_B", "grad of x"),
                                  got, expected):
                report.expect(isinstance(g, torch.Tensor) and _close(g, e),
                              f"{name} (eval mode)", "no gradient" if g is None else _diff(g, e))
    case = dict(d_in=16, d_out=10, r=4, alpha=12.0, dropout=0.5)
    with report.case("dropout in training mode"):
        layer, expected_layer = _shell(ex, ref, case)
        x = _input(case, seed=5, shape=(6,))
        got, _ = beside(ex, probes.seeded_output, layer, x, 11)
        expected, _ = probes.seeded_output(expected_layer, x, 11)
        report.expect(_close(got, expected), "dropout on the LoRA input only (train mode)",
                      _diff(got, expected))
        beside(ex, probes.set_lora_weights, layer, 0, 0.0, b_only=True)
        got, base_out = beside(ex, probes.seeded_output, layer, x, 12)
        report.expect(torch.equal(got, base_out), "no dropout on the base path",
                      "with B = 0 the output must equal base_layer(x) even in train mode")
    with report.case("merged layer"):
        layer, expected_layer = _shell(ex, ref, case)
        x = _input(case, seed=6, shape=(4,))
        with torch.no_grad():
            before = expected_layer(x)
            weight = expected_layer.base_layer.weight + \
                ref.LoRALinear.get_delta_weight(expected_layer)
        got, base_out = beside(ex, probes.merged_output, layer, x, weight)
        report.expect(_close(got, base_out) and _close(got, before),
                      "a merged layer returns base_layer(x) alone", _diff(got, before))
    report.finish()


@_seeded
def get_delta_weight_hidden(ex: ModuleType, ref: ModuleType) -> None:
    """get_delta_weight(): B @ A * scaling, shape (out, in), dtype of the LoRA weights."""
    report = HiddenReport("get_delta_weight")
    for i, case in enumerate(_layer_cases(seed=43, n_random=4)):
        with report.case(case["label"]):
            layer, expected_layer = _shell(ex, ref, case, seed=i)
            got = layer.get_delta_weight()
            expected = ref.LoRALinear.get_delta_weight(expected_layer).detach()
            report.expect(_close(got, expected), "B @ A * scaling", _diff(got, expected))
            report.expect(got.dtype == expected.dtype, "dtype of the LoRA weights",
                          f"got {got.dtype}, expected {expected.dtype}")
    report.finish()


@_seeded
def merge_hidden(ex: ModuleType, ref: ModuleType) -> None:
    """merge(): W += delta, merged set, same outputs, bias and A, B untouched, base still frozen;
    merging twice adds nothing; a NaN update raises ValueError and leaves W as it was."""
    report = HiddenReport("merge")
    for i, case in enumerate(_layer_cases(seed=44, n_random=3)):
        with report.case(case["label"]):
            _check_merge(report, ex, ref, case, seed=i)
    case = dict(d_in=6, d_out=5, r=2, alpha=4.0)
    with report.case("update with a NaN"):
        layer, expected_layer = _shell(ex, ref, case, stand_ins=("get_delta_weight",))
        w0 = expected_layer.base_layer.weight.detach()
        seen = beside(ex, probes.merge_with_nan, layer)
        report.expect(seen["refused"], "NaN update refused with ValueError",
                      "merge() accepted an update holding NaN")
        report.expect(torch.equal(seen["weight"], w0) and seen["merged"] is False,
                      "W and merged unchanged after a refused merge")
    report.finish()


def _after(ref: ModuleType, expected_layer: nn.Module, seen: dict, x: torch.Tensor
           ) -> torch.Tensor:
    """The reference forward of a layer in the state the learner's method left (`seen`)."""
    layer = copy.deepcopy(expected_layer)
    with torch.no_grad():
        layer.base_layer.weight.copy_(seen["weight"])
        layer.lora_A.weight.copy_(seen["A"])
        layer.lora_B.weight.copy_(seen["B"])
        layer.merged = seen["merged"] is True
        return layer(x)


def _check_merge(report: HiddenReport, ex: ModuleType, ref: ModuleType, case: dict,
                 seed: int) -> None:
    layer, expected_layer = _shell(ex, ref, case, seed=seed, stand_ins=("get_delta_weight",))
    x = _input(case, seed=seed)
    base = expected_layer.base_layer
    with torch.no_grad():
        before = expected_layer(x)
        delta = ref.LoRALinear.get_delta_weight(expected_layer)
    w0, a0, b0 = base.weight.detach(), expected_layer.lora_A.weight.detach(), \
        expected_layer.lora_B.weight.detach()
    seen = beside(ex, probes.merge_twice, layer)
    report.expect(seen["merged"] is True, "merged is True after merge()",
                  f"got {seen['merged']!r}")
    w = seen["weight"]
    report.expect(_close(w, w0 + delta, WEIGHT_TOL), "W + B @ A * scaling", _diff(w, w0 + delta))
    report.expect(not seen["weight_requires_grad"], "base weight still frozen after merge()",
                  "the merged weight requires grad (a new nn.Parameter?)")
    if base.bias is not None:
        report.expect(isinstance(seen["bias"], torch.Tensor)
                      and torch.equal(seen["bias"], base.bias.detach()),
                      "bias untouched by merge()")
    report.expect(torch.equal(seen["A"], a0) and torch.equal(seen["B"], b0),
                  "lora_A and lora_B untouched by merge() (unmerge needs them)")
    after = _after(ref, expected_layer, seen, x)
    report.expect(_close(after, before), "same outputs after merge()", _diff(after, before))
    w = seen["weight_twice"]
    report.expect(_close(w, w0 + delta, WEIGHT_TOL), "merging twice adds the update once",
                  _diff(w - w0, delta))


@_seeded
def unmerge_hidden(ex: ModuleType, ref: ModuleType) -> None:
    """unmerge(): W back to the base weight, merged cleared, the LoRA path used again;
    unmerging twice or an unmerged layer changes nothing."""
    report = HiddenReport("unmerge")
    for i, case in enumerate(_layer_cases(seed=45, n_random=3)):
        with report.case(case["label"]):
            layer, expected_layer = _shell(ex, ref, case, seed=i,
                                           stand_ins=("get_delta_weight", "merge"))
            x = _input(case, seed=i)
            with torch.no_grad():
                before = expected_layer(x)
            w0 = expected_layer.base_layer.weight.detach()
            untouched, undone, twice, remerged = beside(ex, probes.unmerge_steps, layer)
            w = untouched["weight"]
            report.expect(_close(w, w0, WEIGHT_TOL) and untouched["merged"] is False,
                          "unmerge() of an unmerged layer changes nothing", _diff(w, w0))
            w = undone["weight"]
            report.expect(undone["merged"] is False, "merged is False after unmerge()",
                          f"got {undone['merged']!r}")
            report.expect(_close(w, w0, WEIGHT_TOL), "base weight restored", _diff(w, w0))
            report.expect(not undone["weight_requires_grad"],
                          "base weight still frozen after unmerge()")
            after = _after(ref, expected_layer, undone, x)
            report.expect(_close(after, before), "same outputs after unmerge()",
                          _diff(after, before))
            w = twice["weight"]
            report.expect(_close(w, w0, WEIGHT_TOL), "unmerging twice subtracts once",
                          _diff(w, w0))
            # trained a little (B times -2), then merged again: W0 + the new update
            with torch.no_grad():
                expected_layer.lora_B.weight.mul_(-2.0)
                delta = ref.LoRALinear.get_delta_weight(expected_layer)
            report.expect(_close(remerged["weight"], w0 + delta, WEIGHT_TOL),
                          "merge after unmerge uses the new update",
                          _diff(remerged["weight"], w0 + delta))
    report.finish()


# --- into a model --------------------------------------------------------------------------------
NAMES = ["model.layers.0.self_attn.q_proj", "model.layers.10.mlp.down_proj", "lm_head",
         "model.layers.1.self_attn.o_proj", "encoder.block.0.layer.0.SelfAttention.q"]
TARGETS = [["q_proj"], ["self_attn.q_proj"], ["proj"], ["_proj"], ["attn.q_proj"],
           ["0.self_attn.q_proj"], ["model.layers.0.self_attn.q_proj"],
           ["layers.1.self_attn.o_proj"],
           ["q"], ["lm_head"], ["head"], [], ["v_proj", "q_proj"], ["0.mlp.down_proj"],
           ["model"], ["model.layers.10.mlp.down_proj.x"]]


@_seeded
def matches_target_hidden(ex: ModuleType, ref: ModuleType) -> None:
    """matches_target(name, targets): peft's rule (whole name, or its end after a dot)."""
    cases = [("fixed name and targets", (n, t), {}) for n in NAMES for t in TARGETS]
    rng = random.Random(46)
    parts = ["model", "layers", "0", "1", "10", "self_attn", "q_proj", "k_proj", "mlp", "up_proj",
             "proj", "attn"]
    for _ in range(60):
        name = ".".join(rng.choice(parts) for _ in range(rng.randint(1, 5)))
        pieces = name.split(".")
        targets = []
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            if roll < 0.4:  # a trailing run of components: matches
                targets.append(".".join(pieces[rng.randint(0, len(pieces) - 1):]))
            elif roll < 0.7:  # a trailing piece of text: matches only at a dot
                targets.append(name[rng.randint(0, len(name) - 1):])
            elif roll < 0.85:
                targets.append(name[:rng.randint(1, len(name))])
            else:
                targets.append(rng.choice(parts))
        cases.append(("random name and targets", (name, targets), {}))
    compare_with_reference("matches_target", ex.matches_target, ref.matches_target, cases)


def _target_cases() -> list[tuple[str, Callable[[], nn.Module], object]]:
    return [
        ("all-linear (tied head)", tiny_qwen, "all-linear"),
        ("all-linear (untied head)", lambda: tiny_qwen(tied=False), "all-linear"),
        ("ALL-LINEAR in capitals", tiny_qwen, "ALL-LINEAR"),
        ("all-linear (no output embeddings)", NestedModel, "all-linear"),
        ("two short names", tiny_qwen, ["q_proj", "v_proj"]),
        ("dotted and short names", tiny_qwen, ["self_attn.o_proj", "down_proj"]),
        ("one full name", tiny_qwen, ["model.layers.1.mlp.up_proj"]),
        ("the output head by name", tiny_qwen, ["lm_head"]),
        ("nested names", NestedModel, ["proj", "decoder.0", "head"]),
        ("index as a name", NestedModel, ["2"]),
    ]


@_seeded
def find_target_modules_hidden(ex: ModuleType, ref: ModuleType) -> None:
    """find_target_modules: the same names in the same order as the reference ("all-linear"
    without the output head, lists by matches_target); TypeError for a non-Linear match,
    ValueError naming a target that matches nothing."""
    report = HiddenReport("find_target_modules")
    with patched(ex, matches_target=ref.matches_target):
        for label, make, targets in _target_cases():
            with report.case(label):
                model = make()
                got, expected = ex.find_target_modules(model, targets), \
                    ref.find_target_modules(model, targets)
                report.expect(list(got) == expected, label,
                              f"targets {targets!r}: got {short(list(got), 300)}, "
                              f"expected {short(expected, 300)}")
        for label, make, targets, error, named in (
                ("a target that is not an nn.Linear", tiny_qwen, ["mlp"], TypeError,
                 "model.layers.0.mlp"),
                ("a LayerNorm target", NestedModel, ["norm"], TypeError, "encoder.norm"),
                ("a target that matches nothing", tiny_qwen, ["q_proj", "qproj"], ValueError,
                 "qproj")):
            with report.case(label):
                try:
                    ex.find_target_modules(make(), targets)
                except error as err:
                    report.expect(named in str(err), f"{label}: the error names it",
                                  f"message {str(err)!r} does not name {named!r}")
                else:
                    report.expect(False, f"{label}: accepted", f"expected {error.__name__}")
    report.finish()


@_seeded
def inject_lora_hidden(ex: ModuleType, ref: ModuleType) -> None:
    """inject_lora: exactly the targets replaced in place (same module objects as base_layer),
    settings passed on, only A and B trainable, the same outputs at init, returns the model."""
    report = HiddenReport("inject_lora")
    cases = [
        ("all-linear", tiny_qwen, "all-linear", dict(r=4, alpha=8.0)),
        ("two targets with rsLoRA and dropout", functools.partial(tiny_qwen, tied=False),
         ["q_proj", "v_proj"], dict(r=2, alpha=16.0, dropout=0.1, use_rslora=True)),
        ("nested model with gaussian init", NestedModel, ["proj", "head"],
         dict(r=1, alpha=3.0, init="gaussian")),
    ]
    with patched(ex, LoRALinear=StandInLoRA, find_target_modules=ref.find_target_modules,
                 matches_target=ref.matches_target):
        for label, make, targets, settings in cases:
            with report.case(label):
                _check_inject(report, ex, ref, make, targets, settings)
    report.finish()


def _check_inject(report: HiddenReport, ex: ModuleType, ref: ModuleType, make: Callable,
                  targets, settings: dict) -> None:
    local = make()                      # the same model as the learner's, built here
    names = ref.find_target_modules(local, targets)
    before = model_output(local)
    model = beside(ex, make)
    originals = beside(ex, probes.submodules, model, names)
    out = ex.inject_lora(model, targets, **settings)
    report.expect(out is model, "returns the model itself (changed in place)")
    seen = beside(ex, probes.injected_layers, model, names)
    lora = sorted(beside(ex, probes.describe, model, StandInLoRA)["lora"])
    report.expect(lora == sorted(names), "exactly the target modules replaced",
                  f"LoRA layers at {short(lora, 300)}, expected {short(names, 300)}")
    wanted = {"r": settings["r"], "alpha": settings["alpha"],
              "dropout": settings.get("dropout", 0.0),
              "use_rslora": settings.get("use_rslora", False),
              "init": settings.get("init", "kaiming")}
    for name, layer in seen["layers"].items():
        if not report.expect(layer["stand_in"], "each target is a LoRALinear",
                             f"{name} is still a {layer['type']}"):
            continue
        report.expect(layer["base"] is originals[name], "base_layer is the original module")
        got = layer["settings"]
        report.expect({k: got.get(k) for k in ("r", "alpha", "dropout", "use_rslora")} ==
                      {k: wanted[k] for k in ("r", "alpha", "dropout", "use_rslora")},
                      "r, alpha, dropout and rsLoRA passed on", f"{name}: got {got}, "
                      f"expected {wanted}")
        if settings.get("init") == "gaussian":
            report.expect(got.get("init") == "gaussian", "init passed on",
                          f"{name}: LoRALinear got init={got.get('init')!r}")
    trainable = set(seen["trainable"])
    expected_trainable = {f"{n}.{part}.weight" for n in names for part in ("lora_A", "lora_B")}
    report.expect(trainable == expected_trainable, "only lora_A and lora_B trainable",
                  f"also trainable: {short(sorted(trainable - expected_trainable), 300)}; "
                  f"frozen: {short(sorted(expected_trainable - trainable), 300)}")
    after = seen["output"]
    report.expect(_close(after, before), "same outputs right after injection", _diff(after, before))


@_seeded
def count_parameters_hidden(ex: ModuleType, ref: ModuleType) -> None:
    """count_parameters: (trainable, total), tied or shared tensors once, buffers not counted."""
    def injected():   # peft's LoRA layers: a model of the reference's would be the answer
        from peft import LoraConfig, get_peft_model
        return get_peft_model(tiny_qwen(), LoraConfig(r=4, lora_alpha=8,
                                                      target_modules="all-linear"))

    def frozen():
        return tiny_qwen(tied=False).requires_grad_(False)

    models = [("tied embeddings", tiny_qwen), ("untied embeddings", lambda: tiny_qwen(False)),
              ("after LoRA injection (peft)", injected), ("shared layer, buffer, frozen head", shared_layer_model),
              ("everything frozen", frozen)]
    compare_with_reference("count_parameters", ex.count_parameters, ref.count_parameters,
                           [(label, (make(),), {}) for label, make in models])


# models with stand-in LoRA layers: (label, builder, targets, merged_first), built the same way
# here and where the learner's code runs
ADAPTER_CASES = [("Qwen2 with two targets", tiny_qwen, ["q_proj", "down_proj"], False),
                 ("nested model", NestedModel, "all-linear", False),
                 ("one layer merged", functools.partial(tiny_qwen, tied=False), "all-linear",
                  True)]


def _with_stand_ins(ex: ModuleType | None, ref: ModuleType, make: Callable, targets,
                    r: int, alpha: float, seed: int, merged_first: bool):
    """(the model here, its names of LoRA layers, the same model where the learner's code runs
    when `ex` is given)."""
    local = make()
    names = ref.find_target_modules(local, targets)
    probes.with_stand_ins(local, names, r, alpha, seed, merged_first)
    if ex is None:
        return local, names, None
    model = beside(ex, make)
    beside(ex, probes.with_stand_ins, model, names, r, alpha, seed, merged_first)
    return local, names, model


@_seeded
def adapter_state_dict_hidden(ex: ModuleType, ref: ModuleType) -> None:
    """adapter_state_dict: peft's keys for every LoRA layer, A and B only, equal values."""
    report = HiddenReport("adapter_state_dict")
    with patched(ex, LoRALinear=StandInLoRA), patched(ref, LoRALinear=StandInLoRA):
        for label, make, targets, merged_first in ADAPTER_CASES:
            with report.case(label):
                local, _, model = _with_stand_ins(ex, ref, make, targets, r=2, alpha=4, seed=1,
                                                  merged_first=merged_first)
                got, expected = ex.adapter_state_dict(model), ref.adapter_state_dict(local)
                if not report.expect(isinstance(got, dict), "returns a dict",
                                     f"got {type(got).__name__}"):
                    continue
                missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
                report.expect(not missing and not extra, "peft's key names, A and B only",
                              f"missing {short(missing, 200)}, unexpected {short(extra, 200)}")
                for key in set(got) & set(expected):
                    value = got[key]
                    if not report.expect(isinstance(value, torch.Tensor)
                                         and torch.equal(value.cpu(), expected[key]),
                                         "values equal the LoRA weights", key):
                        break
                    report.expect(not value.requires_grad and value.device.type == "cpu",
                                  "detached CPU tensors", key)
    report.finish()


@_seeded
def merge_and_unload_hidden(ex: ModuleType, ref: ModuleType) -> None:
    """merge_and_unload: every LoRA layer merged once and replaced by its own base_layer; the
    same outputs; the original state_dict keys; returns the model."""
    report = HiddenReport("merge_and_unload")
    cases = [("Qwen2 all-linear", tiny_qwen, "all-linear", False),
             ("one layer already merged", functools.partial(tiny_qwen, tied=False),
              ["q_proj", "up_proj"], True),
             ("nested model", NestedModel, ["proj", "head"], False)]
    with patched(ex, LoRALinear=StandInLoRA):
        for label, make, targets, merged_first in cases:
            with report.case(label):
                keys = set(make().state_dict())
                local, names, model = _with_stand_ins(ex, ref, make, targets, r=2, alpha=6,
                                                      seed=2, merged_first=merged_first)
                layers = {n: local.get_submodule(n) for n in names}
                merged_w = {n: m.base_layer.weight.detach() + (
                    0 if m.merged else m.get_delta_weight().detach()) for n, m in layers.items()}
                before = model_output(local)
                out = ex.merge_and_unload(model)
                report.expect(out is model, "returns the model itself")
                seen = beside(ex, probes.unloaded, model, names)
                report.expect(not seen["left"], "no LoRA layer left",
                              f"still there: {short(sorted(seen['left']), 200)}")
                for name, layer in layers.items():
                    module = seen["modules"][name]
                    if not report.expect(module["linear"], "each LoRA layer replaced "
                                         "by an nn.Linear (its base_layer)",
                                         f"{name} is a {module['type']}"):
                        continue
                    report.expect(_close(module["weight"], merged_w[name], WEIGHT_TOL),
                                  "weights merged once", f"{name}: "
                                  f"{_diff(module['weight'], merged_w[name])}")
                    bias = layer.base_layer.bias
                    report.expect((module["bias"] is None) == (bias is None) and (
                        bias is None or torch.equal(module["bias"], bias.detach())),
                        "bias unchanged", name)
                report.expect(set(seen["keys"]) == keys, "the original state_dict keys",
                              f"extra {short(sorted(set(seen['keys']) - keys), 200)}, "
                              f"missing {short(sorted(keys - set(seen['keys'])), 200)}")
                after = seen["output"]
                report.expect(_close(after, before), "same outputs after merge_and_unload",
                              _diff(after, before))
    report.finish()


# --- what LoRA saves -----------------------------------------------------------------------------
@_seeded
def lora_parameter_count_hidden(ex: ModuleType, ref: ModuleType) -> None:
    """lora_parameter_count(d_in, d_out, r) = (d_out * d_in, r * (d_in + d_out))."""
    fixed = [(4096, 4096, 8), (4096, 11008, 64), (896, 4864, 64), (3584, 512, 64), (1, 1, 1),
             (10, 3, 2)]
    rng = random.Random(47)
    random_cases = [(rng.randint(1, 9000), rng.randint(1, 9000), rng.randint(1, 128))
                    for _ in range(6)]
    cases = [("7B and Qwen2.5 shapes", args, {}) for args in fixed] + \
        [("random shapes", args, {}) for args in random_cases]
    compare_with_reference("lora_parameter_count", ex.lora_parameter_count,
                           ref.lora_parameter_count, cases)


@_seeded
def estimate_training_memory_hidden(ex: ModuleType, ref: ModuleType) -> None:
    """estimate_training_memory: the four terms and their total, for every precision."""
    sizes = [("7B full", 7_615_616_512, 7_615_616_512), ("7B LoRA", 7_656_000_000, 40_370_176),
             ("small", 1_390_720, 77_824), ("nothing trainable", 1000, 0)]
    cases = [(f"{label}, {precision}", (n, t), dict(precision=precision, activation_bytes=act))
             for label, n, t in sizes for precision in sorted(ref.BYTES_PER_PARAM)
             for act in (0, 123_456_789)]
    compare_with_reference("estimate_training_memory", ex.estimate_training_memory,
                           ref.estimate_training_memory, cases)


HIDDEN_CHECKS = {f.__name__: f for f in (
    lora_linear_init_hidden, lora_linear_forward_hidden, get_delta_weight_hidden, merge_hidden,
    unmerge_hidden, matches_target_hidden, find_target_modules_hidden, inject_lora_hidden,
    count_parameters_hidden, adapter_state_dict_hidden, merge_and_unload_hidden,
    lora_parameter_count_hidden, estimate_training_memory_hidden)}
