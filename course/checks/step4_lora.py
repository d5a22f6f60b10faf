"""Visible checks for step 4 (LoRA), with a diagnosis for each classic mistake.

    from course.checks import step4_lora as checks
    checks.check_lora_linear_init(ex)        # ex = the learner's lora_exercise module

Each check builds small layers or a tiny Qwen2 model, computes what the answer must be by hand
(W x + b + B A x * alpha / r), and names the mistake a wrong result looks like.

The layers and models the learner's code changes are made and changed where that code runs
(`course.grading.beside`: here, or in the grading worker), and read back as plain values; the
probes at the end of this file are what runs there.
"""
from __future__ import annotations

import math
import types
import warnings
from types import ModuleType
from typing import Callable

import torch
from torch import nn

from course.grading import beside, call, fail, passed, short

TOL = 1e-5


def _close(a, b, tol: float = TOL) -> bool:
    return (isinstance(a, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a, b, rtol=tol, atol=tol))


def _linear(d_in: int = 64, d_out: int = 48, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d_in, d_out, bias=bias)


def _layer(ex: ModuleType, r: int = 8, alpha: float = 16.0, seed: int = 0, **kwargs):
    """The learner's LoRALinear over a seeded 64 -> 48 layer, with a non-zero B (as after some
    training), in eval mode."""
    layer = call(ex.LoRALinear, beside(ex, _linear, seed=seed), r, alpha,
                 what=f"LoRALinear(nn.Linear(64, 48), r={r}, alpha={alpha})", **kwargs)
    beside(ex, set_lora_weights, layer, seed + 1, 0.2)
    return layer.eval()


def _x(d_in: int = 64, seed: int = 7) -> torch.Tensor:
    return torch.randn(2, 5, d_in, generator=torch.Generator().manual_seed(seed))


def _by_hand(layer, x: torch.Tensor, scaling: float) -> torch.Tensor:
    base = layer.base_layer
    return base(x) + x @ layer.lora_A.weight.T @ layer.lora_B.weight.T * scaling


def tiny_qwen(tied: bool = True, seed: int = 0) -> nn.Module:
    """A 2-layer Qwen2 with hidden size 32 (the embedded model's architecture, tiny)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(seed)
    config = Qwen2Config(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=64,
                         max_position_embeddings=64, tie_word_embeddings=tied)
    return Qwen2ForCausalLM(config).eval()


class NestedModel(nn.Module):
    """Names that peft's matching rules tell apart: encoder.proj vs decoder.proj_out, a Conv1d
    and a LayerNorm, a Linear registered under two names, a buffer, no output-embedding method."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = nn.ModuleDict({"proj": nn.Linear(8, 8), "norm": nn.LayerNorm(8)})
        self.decoder = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 6))
        self.decoder_proj_out = nn.Linear(6, 6)
        self.conv = nn.Conv1d(6, 6, 1)
        self.head = nn.Linear(6, 4)
        self.register_buffer("steps", torch.zeros(5))

    def forward(self, x):
        h = self.decoder(self.encoder["norm"](self.encoder["proj"](x)))
        h = self.conv(self.decoder_proj_out(h).unsqueeze(-1)).squeeze(-1)
        return self.head(h)


def shared_layer_model() -> nn.Module:
    """NestedModel with one Linear under two names and a frozen head."""
    model = NestedModel()
    model.tied = model.encoder["proj"]  # one Linear under two names: its parameters count once
    model.head.requires_grad_(False)
    return model


def _randomise_lora(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _raises(fn, error: type, what: str, mistake: str) -> BaseException:
    try:
        fn()
    except NotImplementedError:
        raise
    except error as err:
        return err
    except Exception as err:  # noqa: BLE001
        fail(what, mistake=mistake, got=f"{type(err).__name__}: {err}", expected=error.__name__)
    fail(what, mistake=mistake, got="no error", expected=error.__name__)


# --- LoRALinear.__init__ -------------------------------------------------------------------------
def check_lora_linear_init(ex: ModuleType) -> None:
    base = _linear()
    w0 = base.weight.detach().clone()
    layer = call(ex.LoRALinear, base, 8, 16.0, what="LoRALinear(nn.Linear(64, 48), r=8, alpha=16)")
    if getattr(layer, "base_layer", None) is not base:
        fail("base_layer is the nn.Linear passed in (kept, not copied)",
             got=type(getattr(layer, "base_layer", None)).__name__)
    if not torch.equal(base.weight, w0):
        fail("the base weight is unchanged by __init__")
    if base.weight.requires_grad:
        fail("the base weight is frozen (requires_grad False)",
             mistake="base weight left trainable: the whole layer trains, LoRA saves nothing")
    if base.bias.requires_grad:
        fail("the base bias is frozen too",
             mistake="base bias left trainable: freeze every parameter of base_layer, not only "
                     "its weight")
    a, b = layer.lora_A.weight, layer.lora_B.weight
    if tuple(a.shape) != (8, 64) or tuple(b.shape) != (48, 8):
        fail("lora_A.weight is (r, in) = (8, 64) and lora_B.weight is (out, r) = (48, 8)",
             mistake="A and B swapped or transposed (nn.Linear(in, out).weight is (out, in))"
             if tuple(a.shape) == (64, 8) or tuple(b.shape) == (8, 48) else None,
             got=(tuple(a.shape), tuple(b.shape)), expected=((8, 64), (48, 8)))
    passed("base layer kept and frozen (weight and bias); A is (8, 64), B is (48, 8)")
    if torch.count_nonzero(b):
        fail("lora_B starts at zero",
             mistake="B must start at zero, so that the adapted layer equals the base layer "
                     "before training (here it starts from a randomly perturbed model)")
    if torch.count_nonzero(a) < 0.9 * a.numel():
        fail("lora_A starts random",
             mistake="A must start random: with A = B = 0, B's gradient (which needs A x) and "
                     "A's gradient (which needs B) are both zero, and nothing ever learns")
    bound = 1 / math.sqrt(64)
    if a.detach().abs().max() > bound * (1 + 1e-5):
        fail("init='kaiming': A is uniform within +-1/sqrt(in_features) (peft's default)",
             got=f"max |A| = {a.detach().abs().max():.4g}", expected=f"<= {bound:.4g}")
    gauss = call(ex.LoRALinear, _linear(), 8, 16.0, init="gaussian",
                 what="LoRALinear(..., init='gaussian')")
    std = gauss.lora_A.weight.detach().std().item()
    if not 0.8 / 8 < std < 1.2 / 8:
        fail("init='gaussian': A is normal with std 1/r", got=f"std {std:.4g}",
             expected=f"about {1 / 8:.4g}")
    passed("B = 0 (the layer equals the base layer at init), A random (kaiming or gaussian)")
    scaling = float(layer.scaling)
    if scaling != 2.0:
        fail("scaling = alpha / r = 16 / 8 = 2",
             mistake="scaling alpha instead of alpha / r: the update is r times too large"
             if scaling == 16.0 else None, got=scaling, expected=2.0)
    rs = call(ex.LoRALinear, _linear(), 4, 8.0, use_rslora=True,
              what="LoRALinear(..., r=4, alpha=8, use_rslora=True)")
    if float(rs.scaling) != 4.0:
        fail("rsLoRA scaling = alpha / sqrt(r) = 8 / 2 = 4",
             mistake="use_rslora ignored" if float(rs.scaling) == 2.0 else None,
             got=float(rs.scaling), expected=4.0)
    passed("scaling alpha / r = 2, and alpha / sqrt(r) = 4 with rsLoRA")
    trainable = [n for n, p in layer.named_parameters() if p.requires_grad]
    if sorted(trainable) != ["lora_A.weight", "lora_B.weight"]:
        fail("exactly lora_A.weight and lora_B.weight are trainable", got=trainable)
    drop = call(ex.LoRALinear, _linear(), 8, 16.0, dropout=0.1, what="LoRALinear(dropout=0.1)")
    if not isinstance(drop.lora_dropout, nn.Dropout) or drop.lora_dropout.p != 0.1:
        fail("dropout=0.1 gives lora_dropout = nn.Dropout(p=0.1)", got=drop.lora_dropout)
    for what, make, error in (
            ("r=0 raises ValueError", lambda: ex.LoRALinear(_linear(), 0, 4), ValueError),
            ("r=49 > min(64, 48) raises ValueError", lambda: ex.LoRALinear(_linear(), 49, 4),
             ValueError),
            ("a Conv1d raises TypeError", lambda: ex.LoRALinear(nn.Conv1d(4, 4, 1), 2, 4),
             TypeError)):
        _raises(make, error, what, "bad settings must fail loudly, naming the setting")
    passed("only A and B trainable; dropout module; bad r or a non-Linear base rejected")


# --- forward -------------------------------------------------------------------------------------
def check_lora_linear_forward(ex: ModuleType) -> None:
    layer, x = _layer(ex), _x()
    got = call(layer, x, what="layer(x)")
    expected = _by_hand(layer, x, 2.0)
    with torch.no_grad():
        if not _close(got, expected):
            unscaled = _by_hand(layer, x, 1.0)
            fail("layer(x) = base_layer(x) + lora_B(lora_A(x)) * scaling",
                 mistake="scaling is missing: alpha has no effect" if _close(got, unscaled)
                 else None, detail=_diff(got, expected))
    passed("layer(x) = W x + b + B A x * alpha / r")
    layer = _layer(ex, dropout=0.5)
    beside(ex, set_lora_weights, layer, 0, 0.0, b_only=True)  # B = 0: the output is the base's
    with torch.no_grad():
        layer.train()
        got = call(layer, x, what="layer(x) in training mode with dropout=0.5")
        base_out = layer.base_layer(x)
        if not _close(got, base_out):
            scaled = 1 / (1 - 0.5)
            on_output = bool(((got.abs() < 1e-6) | (got - base_out * scaled).abs().lt(1e-5))
                             .all())
            fail("dropout touches the LoRA path only (with B = 0, training mode: exactly the "
                 "base output)",
                 mistake=("dropout on the output: the frozen base path must never see dropout; "
                          "apply it to the LoRA path's input" if on_output else
                          "dropout on both paths: the base layer gets the dropped-out input too; "
                          "only the LoRA path's input, lora_A(lora_dropout(x)), sees dropout"))
    layer = _layer(ex, dropout=0.5).eval()
    if not _close(call(layer, x, what="layer(x) in eval mode"), _by_hand(layer, x, 2.0)):
        fail("in eval mode dropout does nothing")
    passed("dropout only on the LoRA path's input, and off in eval mode")
    layer = _layer(ex)
    with torch.no_grad():
        merged_out = _by_hand(layer, x, 2.0)
        beside(ex, add_to_base_weight, layer, layer.lora_B.weight @ layer.lora_A.weight * 2.0)
        layer.merged = True
        got = call(layer, x, what="layer(x) with merged=True")
        if not _close(got, merged_out):
            fail("once merged, forward is base_layer(x) alone",
                 mistake="the update is counted twice after merge: skip the LoRA path when "
                         "merged", detail=_diff(got, merged_out))
    passed("merged: forward uses the merged weight alone")


def _diff(got, expected) -> str:
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return f"got {short(got)[:80]}, expected a tensor of shape {tuple(expected.shape)}"
    return f"max |difference| {(got - expected).abs().max().item():.3g}"


# --- get_delta_weight, merge, unmerge ------------------------------------------------------------
def check_get_delta_weight(ex: ModuleType) -> None:
    layer = _layer(ex)
    got = call(layer.get_delta_weight, what="layer.get_delta_weight()")
    expected = layer.lora_B.weight @ layer.lora_A.weight * 2.0
    if not _close(got, expected):
        mistake = None
        if isinstance(got, torch.Tensor) and got.shape == expected.T.shape:
            mistake = "transposed: the update must have base_layer.weight's (out, in) shape"
        elif _close(got, expected / 2.0):
            mistake = "scaling is missing from the delta weight"
        fail("get_delta_weight() = lora_B.weight @ lora_A.weight * scaling, shape (48, 64)",
             mistake=mistake, detail=_diff(got, expected))
    passed("get_delta_weight() = B @ A * scaling, shape (out, in)")


def check_merge(ex: ModuleType) -> None:
    layer, x = _layer(ex), _x()
    with torch.no_grad():
        before = _by_hand(layer, x, 2.0)
        w0 = layer.base_layer.weight.detach().clone()
        merged_w = w0 + layer.lora_B.weight @ layer.lora_A.weight * 2.0
        call(layer.merge, what="layer.merge()")
        w = layer.base_layer.weight
        if not _close(w, merged_w):
            fail("merge(): W <- W + B @ A * scaling",
                 mistake="merged without the scaling" if _close(w, merged_w - (merged_w - w0) / 2)
                 else None, detail=_diff(w, merged_w))
        if layer.merged is not True:
            fail("merge() sets merged = True")
        if not _close(layer(x), before):
            fail("the output is the same after merging", detail=_diff(layer(x), before))
        passed("merge() adds B A * scaling into W; the output does not change")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                layer.merge()
            except NotImplementedError:
                raise
            except Exception:  # noqa: BLE001 - refusing is allowed
                pass
        if not _close(layer.base_layer.weight, merged_w):
            fail("merging twice changes nothing",
                 mistake="merging twice adds the update twice: check `merged` first")
    passed("a second merge() is a no-op")


def check_unmerge(ex: ModuleType) -> None:
    layer, x = _layer(ex), _x()
    with torch.no_grad():
        before = _by_hand(layer, x, 2.0)
        w0 = layer.base_layer.weight.detach().clone()
        beside(ex, add_to_base_weight, layer, layer.lora_B.weight @ layer.lora_A.weight * 2.0)
        layer.merged = True
        call(layer.unmerge, what="layer.unmerge()")
        if not _close(layer.base_layer.weight, w0):
            fail("unmerge(): W <- W - B @ A * scaling (the base weight is back)",
                 mistake="unmerge does not restore the base weight",
                 detail=_diff(layer.base_layer.weight, w0))
        if layer.merged is not False:
            fail("unmerge() sets merged = False")
        if not _close(layer(x), before):
            fail("the output is the same after unmerging", detail=_diff(layer(x), before))
    passed("unmerge() restores W and the LoRA path; the output does not change")


# --- targets and injection -----------------------------------------------------------------------
MATCH_CASES = [
    ("model.layers.0.self_attn.q_proj", ["q_proj"], True),
    ("model.layers.0.self_attn.q_proj", ["self_attn.q_proj"], True),
    ("q_proj", ["q_proj"], True),
    ("model.layers.0.self_attn.q_proj", ["proj"], False),
    ("model.layers.10.mlp.up_proj", ["layers.1.mlp.up_proj"], False),
    ("model.layers.0.self_attn.q_proj", ["k_proj", "v_proj"], False),
    ("model.layers.0.self_attn.q_proj", [], False),
]


def check_matches_target(ex: ModuleType) -> None:
    for name, targets, expected in MATCH_CASES:
        got = call(ex.matches_target, name, targets, what=f"matches_target({name!r}, {targets})")
        if got != expected:
            fail(f"matches_target({name!r}, {targets}) is {expected}",
                 mistake="a target matches inside a name: it must be the whole name or its "
                         "end after a dot" if got and not expected else None,
                 got=got, expected=expected)
    passed(f"matches_target: whole trailing name components only ({len(MATCH_CASES)} cases)")


def check_find_target_modules(ex: ModuleType) -> None:
    model = tiny_qwen()
    got = call(ex.find_target_modules, model, "all-linear",
               what="find_target_modules(model, 'all-linear')")
    expected = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head"]
    if list(got) != expected:
        fail("'all-linear': every nn.Linear except the output head, in named_modules() order",
             mistake="the output head (lm_head) is included; peft leaves it out (with tied "
                     "embeddings it is the input embedding matrix too)" if "lm_head" in got
             else None, got=list(got), expected=expected)
    passed(f"'all-linear' finds the {len(expected)} linear layers, not lm_head")
    got = call(ex.find_target_modules, model, ["q_proj", "v_proj"],
               what="find_target_modules(model, ['q_proj', 'v_proj'])")
    expected = [n for n, _ in model.named_modules() if n.endswith(("q_proj", "v_proj"))]
    if list(got) != expected:
        fail("['q_proj', 'v_proj']: those layers of every block", got=list(got),
             expected=expected)
    err = _raises(lambda: ex.find_target_modules(tiny_qwen(), ["mlp"]), TypeError,
                  "a target that is not an nn.Linear ('mlp') raises TypeError",
                  "LoRALinear can only wrap nn.Linear")
    if "model.layers.0.mlp" not in str(err):
        fail("the TypeError names the module", got=str(err), expected="model.layers.0.mlp")
    err = _raises(lambda: ex.find_target_modules(tiny_qwen(), ["q_proj", "qproj"]), ValueError,
                  "a target that matches nothing ('qproj') raises ValueError",
                  "a typo in a target must not be silently ignored")
    if "qproj" not in str(err):
        fail("the ValueError names the target", got=str(err), expected="qproj")
    passed("lists of targets; a non-Linear match or a target matching nothing is an error")


def check_inject_lora(ex: ModuleType) -> None:
    model = beside(ex, tiny_qwen)
    before = beside(ex, model_output, model, 3)
    out = call(ex.inject_lora, model, ["q_proj", "v_proj"], 2, 4.0,
               what="inject_lora(model, ['q_proj', 'v_proj'], r=2, alpha=4)")
    if out is not model:
        fail("inject_lora returns the model itself (changed in place)")
    view = beside(ex, describe, model, ex.LoRALinear)
    names = view["lora"]
    expected = [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    if names != expected:
        fail("exactly the q_proj and v_proj layers are LoRALinear", got=names, expected=expected)
    trainable = view["trainable"]
    want = sorted(f"{n}.{part}.weight" for n in expected for part in ("lora_A", "lora_B"))
    if trainable != want:
        extra = [n for n in trainable if n not in want]
        fail("only the LoRA weights are trainable",
             mistake="the rest of the model is not frozen: embeddings, norms and untargeted "
                     "layers keep training" if extra else None,
             detail=f"{len(trainable)} tensors train, expected {len(want)} (lora_A and lora_B "
                    f"of each target)" + (f"; also training: {extra[:3]}" if extra else
                                          f"; missing: {sorted(set(want) - set(trainable))[:3]}"))
    if not _close(beside(ex, model_output, model, 3), before):
        fail("the model's outputs are unchanged right after injection (B = 0)")
    passed("q_proj and v_proj wrapped in place; only A and B train; outputs unchanged at init")


def check_count_parameters(ex: ModuleType) -> None:
    model = tiny_qwen(tied=True)
    unique = sum(p.numel() for p in model.parameters())
    got = call(ex.count_parameters, model, what="count_parameters(tiny Qwen2 with tied "
               "embeddings)")
    if tuple(got) != (unique, unique):
        tied = model.get_input_embeddings().weight.numel()
        fail("count_parameters(model) == (trainable, total), tied embeddings once",
             mistake="the tied embedding matrix is counted twice (it is the input and output "
                     "embedding at once)" if got and got[1] == unique + tied else None,
             got=got, expected=(unique, unique))
    model.requires_grad_(False)
    model.lm_head.weight.requires_grad_(True)
    got = call(ex.count_parameters, model, what="count_parameters(frozen model)")
    emb = model.lm_head.weight.numel()
    if tuple(got) != (emb, unique):
        fail("only parameters with requires_grad count as trainable", got=got,
             expected=(emb, unique))
    passed("(trainable, total); a tensor shared by two modules counts once")


def check_adapter_state_dict(ex: ModuleType) -> None:
    model = beside(ex, tiny_qwen)
    call(ex.inject_lora, model, ["q_proj", "v_proj"], 2, 4.0, what="inject_lora")
    beside(ex, _randomise_lora, model)
    state = call(ex.adapter_state_dict, model, what="adapter_state_dict(model)")
    expected = {f"base_model.model.{n}.{part}.weight": weight for n, parts in
                beside(ex, lora_weights, model, ex.LoRALinear).items()
                for part, weight in parts.items()}
    if set(state) != set(expected):
        missing = sorted(set(expected) - set(state))
        fail("keys as peft writes them: 'base_model.model.' + module name + "
             "'.lora_A.weight' / '.lora_B.weight', nothing else",
             mistake="peft's keys start with 'base_model.model.'" if missing and not any(
                 k.startswith("base_model.model.") for k in state) else None,
             got=sorted(state)[:3], expected=sorted(expected)[:3])
    for key, value in expected.items():
        if not torch.equal(state[key], value.detach()) or state[key].requires_grad:
            fail(f"{key} holds that layer's weight, detached", got=state[key])
    passed(f"{len(expected)} tensors under peft's keys, A and B only")


def check_merge_and_unload(ex: ModuleType) -> None:
    model = beside(ex, tiny_qwen)
    keys = set(beside(ex, describe, model, nn.Linear)["keys"])
    plain = beside(ex, model_output, model, 3)
    call(ex.inject_lora, model, "all-linear", 2, 4.0, what="inject_lora(model, 'all-linear')")
    beside(ex, _randomise_lora, model)
    adapted = beside(ex, model_output, model, 3)
    out = call(ex.merge_and_unload, model, what="merge_and_unload(model)")
    if out is not model:
        fail("merge_and_unload returns the model itself")
    view = beside(ex, describe, model, ex.LoRALinear)
    left = view["lora"]
    if left:
        fail("no LoRALinear is left: each is replaced by its base_layer", got=left[:3])
    after = beside(ex, model_output, model, 3)
    if not _close(after, adapted, 1e-4):
        fail("the merged model gives the adapted model's outputs",
             mistake="base layers put back without merging: the fine-tuning is lost"
             if _close(after, plain) else None, detail=_diff(after, adapted))
    if set(view["keys"]) != keys:
        fail("the state_dict has the original model's keys (from_pretrained can load it)",
             got=sorted(set(view["keys"]) ^ keys)[:4])
    passed("merged into plain nn.Linear layers; same outputs; the original state_dict keys")


# --- what LoRA saves -----------------------------------------------------------------------------
def check_lora_parameter_count(ex: ModuleType) -> None:
    got = call(ex.lora_parameter_count, 4096, 4096, 8, what="lora_parameter_count(4096, 4096, 8)")
    if tuple(got) != (16_777_216, 65_536):
        fail("lora_parameter_count(4096, 4096, 8) == (16,777,216, 65,536)",
             mistake="count A (r x in) and B (out x r), both" if got and got[1] == 32_768
             else None, got=got, expected=(16_777_216, 65_536))
    got = call(ex.lora_parameter_count, 896, 4864, 64, what="lora_parameter_count(896, 4864, 64)")
    if tuple(got) != (896 * 4864, 64 * (896 + 4864)):
        fail("a non-square layer (Qwen2.5-0.5B's up_proj, r=64)", got=got,
             expected=(896 * 4864, 64 * (896 + 4864)))
    passed("4096 x 4096 at r=8: 16.8M trainable in full, 65.5K with LoRA (0.39 %)")


def check_estimate_training_memory(ex: ModuleType) -> None:
    n, t = 1_000_000, 10_000
    got = call(ex.estimate_training_memory, n, t, "mixed", activation_bytes=5000,
               what="estimate_training_memory(1M params, 10K trainable, 'mixed', 5000)")
    expected = {"weights": 2 * n, "grads": 2 * t, "optimizer": 12 * t, "activations": 5000}
    expected["total"] = sum(expected.values())
    if not isinstance(got, dict) or {k: got.get(k) for k in expected} != expected:
        frozen = isinstance(got, dict) and got.get("grads") == 2 * n
        fail("weights for every parameter, grads and optimizer state for trainable ones",
             mistake="grads and optimizer state counted for frozen parameters: LoRA would "
                     "save nothing" if frozen else None, got=got, expected=expected)
    full = call(ex.estimate_training_memory, 7_000_000_000, 7_000_000_000, "mixed",
                what="estimate_training_memory(7B, 7B, 'mixed')")
    if full.get("total") != 112_000_000_000:
        fail("7B in mixed precision: 16 bytes per parameter = 112 GB", got=full.get("total"))
    passed("mixed precision: 2 bytes per weight, 2 + 12 per trainable parameter; 7B -> 112 GB")


# --- probes: what runs where the learner's code runs (course.grading.beside) ---------------------
# Each makes or changes a layer or model of the learner's, or reads one back as plain values
# (names, flags, tensors) for a check to compare with what it computes itself.
def set_lora_weights(layer: nn.Module, seed: int, scale: float, b_only: bool = False) -> None:
    """Seeded random lora_A and lora_B weights times `scale` (B only with `b_only`)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for part in ("lora_B",) if b_only else ("lora_A", "lora_B"):
            weight = getattr(layer, part).weight
            weight.copy_(torch.randn(weight.shape, generator=g) * scale)


def add_to_base_weight(layer: nn.Module, delta: torch.Tensor) -> None:
    """base_layer.weight += delta (as a merge would), without autograd."""
    with torch.no_grad():
        layer.base_layer.weight += delta.to(layer.base_layer.weight.dtype)


def describe(model: nn.Module, lora_class: type) -> dict:
    """A model as plain data: the names of its `lora_class` modules, its trainable parameter
    names, its state_dict keys, and which modules are plain nn.Linear."""
    return {"lora": [n for n, m in model.named_modules() if isinstance(m, lora_class)],
            "trainable": sorted(n for n, p in model.named_parameters() if p.requires_grad),
            "keys": sorted(model.state_dict()),
            "linear": [n for n, m in model.named_modules() if type(m) is nn.Linear]}


def lora_weights(model: nn.Module, lora_class: type) -> dict[str, dict[str, torch.Tensor]]:
    """{module name: {"lora_A": A, "lora_B": B}} for each `lora_class` module, detached."""
    return {n: {part: getattr(m, part).weight.detach().clone() for part in ("lora_A", "lora_B")}
            for n, m in model.named_modules() if isinstance(m, lora_class)}


def model_output(model: nn.Module, seed: int = 0) -> torch.Tensor:
    """The model's output on a seeded input: logits of a Qwen2, the output of a NestedModel."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if isinstance(model, NestedModel):
            return model(torch.randn(3, 8, generator=g))
        return model(torch.randint(0, model.config.vocab_size, (2, 7), generator=g)).logits


def lora_state(layer: nn.Module) -> dict:
    """A LoRA layer's state as plain values: base weight and bias, A, B, dropout p, settings."""
    base = layer.base_layer
    return {"weight": base.weight.detach().clone(),
            "bias": None if base.bias is None else base.bias.detach().clone(),
            "A": layer.lora_A.weight.detach().clone(), "B": layer.lora_B.weight.detach().clone(),
            "p": float(getattr(layer.lora_dropout, "p", 0.0)),
            **{k: getattr(layer, k) for k in ("r", "alpha", "use_rslora", "scaling", "merged")}}


def _linear_of(weight: torch.Tensor, bias: torch.Tensor | None, trainable: bool) -> nn.Linear:
    out_features, in_features = weight.shape
    layer = nn.Linear(in_features, out_features, bias=bias is not None, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer.requires_grad_(trainable)


def shell_of(cls: type, state: dict, settings: dict, stand_ins: tuple[str, ...] = ()
             ) -> nn.Module:
    """An instance of `cls` (the learner's LoRALinear) holding `state` (see lora_state), so one
    method can be tested without the learner's __init__ (used only if it fails). The methods
    named in `stand_ins` ("get_delta_weight", "merge") are replaced on this instance by plain
    versions, so a method that calls them is tested alone."""
    base = _linear_of(state["weight"], state["bias"], trainable=False)
    try:
        layer = cls(_linear_of(state["weight"], state["bias"], False), state["r"],
                    state["alpha"], **settings)
    except Exception:  # noqa: BLE001 - incl. an unfinished __init__: not what is tested here
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
    layer.base_layer = base
    layer.lora_A = _linear_of(state["A"], None, trainable=True)
    layer.lora_B = _linear_of(state["B"], None, trainable=True)
    layer.lora_dropout = nn.Dropout(p=state["p"]) if state["p"] > 0 else nn.Identity()
    for name in ("r", "alpha", "use_rslora", "scaling", "merged"):
        setattr(layer, name, state[name])
    for name in stand_ins:
        setattr(layer, name, types.MethodType(_STAND_INS[name], layer))
    return layer.eval()


def _plain_delta_weight(layer: nn.Module) -> torch.Tensor:
    return (layer.lora_B.weight @ layer.lora_A.weight) * layer.scaling


def _plain_merge(layer: nn.Module) -> None:
    if not layer.merged:
        add_to_base_weight(layer, _plain_delta_weight(layer))
        layer.merged = True


_STAND_INS = {"get_delta_weight": _plain_delta_weight, "merge": _plain_merge}


def output_and_grads(layer: nn.Module, x: torch.Tensor, seed: int = 99) -> list:
    """layer(x), and the gradients of lora_A, lora_B and x for a seeded random output weight."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    y = layer(x)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y.dtype)
    (y * w).sum().backward()
    return [y.detach(), layer.lora_A.weight.grad, layer.lora_B.weight.grad, x.grad]


def seeded_output(layer: nn.Module, x: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """[layer(x), base_layer(x)] in training mode with the torch seed set first (dropout)."""
    layer.train()
    torch.manual_seed(seed)
    with torch.no_grad():
        return [layer(x), layer.base_layer(x)]


def merged_output(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> list:
    """[layer(x), base_layer(x)] after writing a merged `weight` into base_layer and setting
    merged = True (a merge done by hand)."""
    with torch.no_grad():
        layer.base_layer.weight.copy_(weight)
        layer.merged = True
        return [layer(x), layer.base_layer(x)]


def observe(layer: nn.Module) -> dict:
    """What merge()/unmerge() may change, as values (merged as the learner set it)."""
    weight, bias = layer.base_layer.weight, layer.base_layer.bias
    return {"merged": layer.merged, "weight": weight.detach().clone(),
            "weight_requires_grad": bool(weight.requires_grad),
            "bias": None if bias is None else bias.detach().clone(),
            "A": layer.lora_A.weight.detach().clone(), "B": layer.lora_B.weight.detach().clone()}


def allowed_to_refuse(method: Callable[[], None]) -> None:
    """Call a merge()/unmerge() that may do nothing or raise (both are allowed here)."""
    try:
        method()
    except NotImplementedError:
        raise
    except Exception:  # noqa: BLE001
        pass


def merge_twice(layer: nn.Module) -> dict:
    """merge(), what it changed, then a second merge() (which may refuse): its weight."""
    layer.merge()
    seen = observe(layer)
    allowed_to_refuse(layer.merge)
    seen["weight_twice"] = layer.base_layer.weight.detach().clone()
    return seen


def merge_with_nan(layer: nn.Module) -> dict:
    """merge() of an update holding a NaN: whether it raised ValueError, and the state after."""
    with torch.no_grad():
        layer.lora_B.weight[1, 0] = float("nan")
    try:
        layer.merge()
        refused = False
    except ValueError:
        refused = True
    return {"refused": refused, **observe(layer)}


def unmerge_steps(layer: nn.Module) -> list[dict]:
    """unmerge() of an unmerged layer (may refuse); merge() then unmerge(); unmerge() again (may
    refuse); B times -2, then merge(): what each step left."""
    seen = []
    allowed_to_refuse(layer.unmerge)
    seen.append(observe(layer))
    layer.merge()
    layer.unmerge()
    seen.append(observe(layer))
    allowed_to_refuse(layer.unmerge)
    seen.append(observe(layer))
    with torch.no_grad():
        layer.lora_B.weight.mul_(-2.0)
    layer.merge()
    seen.append(observe(layer))
    return seen


class StandInLoRA(nn.Module):
    """A stand-in for the learner's LoRALinear while inject_lora, adapter_state_dict or
    merge_and_unload is tested alone: it keeps the module it wraps as a frozen base_layer,
    records the settings it was given, and has trainable bias-free lora_A and lora_B (B zero);
    its forward adds the update x (B A)^T * scaling unless merged (no dropout)."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0,
                 use_rslora: bool = False, init: str = "kaiming"):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"StandInLoRA wraps an nn.Linear, got {type(base).__name__}")
        self.base_layer = base.requires_grad_(False)
        self.settings = {"r": r, "alpha": alpha, "dropout": dropout, "use_rslora": use_rslora,
                         "init": init}
        self.lora_A = nn.Linear(base.in_features, r, bias=False, dtype=base.weight.dtype)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, dtype=base.weight.dtype)
        nn.init.zeros_(self.lora_B.weight)
        self.scaling, self.merged = alpha / r, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        return out if self.merged else out + nn.functional.linear(x, self.get_delta_weight())

    get_delta_weight = _plain_delta_weight
    merge = _plain_merge


def with_stand_ins(model: nn.Module, names: list[str], r: int, alpha: float, seed: int,
                   merged_first: bool = False) -> nn.Module:
    """`model` frozen, with a StandInLoRA around each module in `names`, seeded random A and B
    (the first layer merged with `merged_first`)."""
    model.requires_grad_(False)
    for name in names:
        model.set_submodule(name, StandInLoRA(model.get_submodule(name), r, alpha))
    g = torch.Generator().manual_seed(seed)
    layers = [model.get_submodule(name) for name in names]
    with torch.no_grad():
        for layer in layers:
            for part in (layer.lora_A, layer.lora_B):
                part.weight.copy_(torch.randn(part.weight.shape, generator=g) * 0.3)
    if merged_first and layers:
        layers[0].merge()
    return model


def injected_layers(model: nn.Module, names: list[str]) -> dict:
    """For each name: whether it is a StandInLoRA now, its base_layer (the object) and the
    settings it recorded; the model's trainable parameter names and its output."""
    layers = {}
    for name in names:
        module = model.get_submodule(name)
        stand_in = isinstance(module, StandInLoRA)
        layers[name] = {"stand_in": stand_in, "type": type(module).__name__,
                        "base": module.base_layer if stand_in else None,
                        "settings": module.settings if stand_in else None}
    return {"layers": layers, "output": model_output(model),
            "trainable": sorted(n for n, p in model.named_parameters() if p.requires_grad)}


def submodules(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    """{name: the module object} (compared by identity after a change)."""
    return {name: model.get_submodule(name) for name in names}


def unloaded(model: nn.Module, names: list[str]) -> dict:
    """After merge_and_unload: LoRA layers left, and for each name whether it is a plain
    nn.Linear, its weight and bias; the state_dict keys and the output."""
    modules = {}
    for name in names:
        m = model.get_submodule(name)
        plain = type(m) is nn.Linear
        modules[name] = {"type": type(m).__name__, "linear": plain,
                         "weight": m.weight.detach().clone() if plain else None,
                         "bias": m.bias.detach().clone() if plain and m.bias is not None
                         else None}
    return {"left": [n for n, m in model.named_modules()
                     if all(hasattr(m, a) for a in ("base_layer", "lora_A", "lora_B"))],
            "modules": modules, "keys": sorted(model.state_dict()), "output": model_output(model)}
