"""Step 4: the hand-written LoRA (solutions/step4_lora/lora_exercise.py) equals peft.

fp32 throughout. With the same A and B in both, forward outputs, the gradients of A and B and
the merged weights agree with peft's lora.Linear to 1e-6 (with and without dropout in eval mode,
rsLoRA too); parameter counts equal peft's get_nb_trainable_parameters() on the embedded model;
an adapter saved here loads with PeftModel.from_pretrained (and one saved by peft loads here) and
gives the same outputs; merge_and_unload round-trips through save_pretrained / from_pretrained.
"""
from __future__ import annotations

import copy
import json
import math
import warnings

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from course import lora_io
from course.grading import load_reference
from course.models import load_base_model

TOL = 1e-6


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def lora():
    return load_reference("step4_lora", "lora_exercise")


@pytest.fixture(scope="module")
def base_model():
    return load_base_model(device="cpu")


@pytest.fixture()
def base(base_model):
    return copy.deepcopy(base_model)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


class Toy(nn.Module):
    def __init__(self, d_in: int, d_out: int, bias: bool):
        super().__init__()
        self.proj = nn.Linear(d_in, d_out, bias=bias)

    def forward(self, x):
        return self.proj(x)


def peft_and_ours(lora, d_in=24, d_out=20, r=4, alpha=8.0, dropout=0.0, use_rslora=False,
                  bias=True, seed=0):
    """peft's lora.Linear and our LoRALinear around copies of one base layer, sharing a random
    A and a random (non-zero) B."""
    torch.manual_seed(seed)
    toy = Toy(d_in, d_out, bias)
    ours = lora.LoRALinear(copy.deepcopy(toy.proj), r, alpha, dropout, use_rslora)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, use_rslora=use_rslora,
                        target_modules=["proj"])
    theirs = get_peft_model(toy, config).base_model.model.proj
    with torch.no_grad():
        ours.lora_B.weight.normal_()
        theirs.lora_A["default"].weight.copy_(ours.lora_A.weight)
        theirs.lora_B["default"].weight.copy_(ours.lora_B.weight)
    return ours, theirs


CASES = [dict(), dict(dropout=0.1), dict(use_rslora=True), dict(use_rslora=True, dropout=0.2),
         dict(bias=False, r=8, alpha=32), dict(d_in=7, d_out=30, r=7, alpha=3.0)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
                         or "default")
def test_layer_equals_peft(lora, case):
    ours, theirs = peft_and_ours(lora, **case)
    assert ours.scaling == theirs.scaling["default"]
    ours.eval(), theirs.eval()  # dropout off
    x = torch.randn(3, 5, ours.base_layer.in_features)
    grad_out = torch.randn(3, 5, ours.base_layer.out_features)
    y_ours, y_theirs = ours(x), theirs(x)
    assert max_diff(y_ours, y_theirs) <= TOL
    (y_ours * grad_out).sum().backward()
    (y_theirs * grad_out).sum().backward()
    for part in ("lora_A", "lora_B"):
        g_ours = getattr(ours, part).weight.grad
        g_theirs = getattr(theirs, part)["default"].weight.grad
        assert g_ours is not None and g_ours.abs().sum() > 0
        assert max_diff(g_ours, g_theirs) <= TOL, part
    assert max_diff(ours.get_delta_weight(), theirs.get_delta_weight("default")) <= TOL
    w0 = ours.base_layer.weight.detach().clone()
    ours.merge(), theirs.merge()
    assert max_diff(ours.base_layer.weight, theirs.base_layer.weight) <= TOL
    with torch.no_grad():
        assert max_diff(ours(x), y_theirs) <= 1e-5  # one matmul instead of two: rounding only
        assert max_diff(ours(x), theirs(x)) <= TOL
    ours.unmerge(), theirs.unmerge()
    assert max_diff(ours.base_layer.weight, theirs.base_layer.weight) <= TOL
    assert max_diff(ours.base_layer.weight, w0) <= TOL


def test_dropout_in_training_mode_equals_peft_with_the_same_seed(lora):
    ours, theirs = peft_and_ours(lora, dropout=0.5)
    x = torch.randn(4, ours.base_layer.in_features)
    torch.manual_seed(7)
    y_ours = ours(x)
    torch.manual_seed(7)
    y_theirs = theirs(x)
    assert max_diff(y_ours, y_theirs) <= TOL
    assert max_diff(y_ours, ours.eval()(x)) > 1e-3  # dropout did something in training mode


@pytest.mark.parametrize("init", ["kaiming", "gaussian"])
def test_initialisation_follows_peft(lora, init):
    torch.manual_seed(0)
    d_in, r = 256, 16
    layer = lora.LoRALinear(nn.Linear(d_in, 64), r, 32, init=init)
    peft_layer = get_peft_model(Toy(d_in, 64, True), LoraConfig(
        r=r, lora_alpha=32, target_modules=["proj"],
        init_lora_weights=True if init == "kaiming" else "gaussian")).base_model.model.proj
    a_ours, a_peft = layer.lora_A.weight, peft_layer.lora_A["default"].weight
    assert torch.count_nonzero(layer.lora_B.weight) == 0
    assert abs(a_ours.std().item() / a_peft.std().item() - 1) < 0.1
    if init == "kaiming":
        assert a_ours.abs().max() <= 1 / math.sqrt(d_in)


TARGETS = [["q_proj", "v_proj"], "all-linear", ["self_attn.o_proj", "down_proj"],
           ["model.layers.0.self_attn.q_proj"], ["lm_head"]]


@pytest.mark.parametrize("targets", TARGETS, ids=str)
@pytest.mark.parametrize("r", [1, 8])
def test_parameter_counts_equal_peft(lora, base_model, targets, r):
    ours = lora.inject_lora(copy.deepcopy(base_model), targets, r=r, alpha=2 * r)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft warns about LoRA on a tied lm_head
        theirs = get_peft_model(copy.deepcopy(base_model), LoraConfig(
            r=r, lora_alpha=2 * r, target_modules=targets))
    assert lora.count_parameters(ours) == theirs.get_nb_trainable_parameters()
    peft_targets = {n for n, m in theirs.base_model.model.named_modules() if hasattr(m, "lora_A")}
    assert set(lora.lora_layers(ours)) == peft_targets
    assert lora.count_parameters(base_model)[1] == theirs.get_nb_trainable_parameters()[1] - \
        theirs.get_nb_trainable_parameters()[0]


def randomise(layers: dict, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in layers.values():
            for part in (layer.lora_A, layer.lora_B):
                part.weight.copy_(torch.randn(part.weight.shape, generator=g) * 0.1)


def batch(model, seed=0, n=2, length=12):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, model.config.vocab_size, (n, length), generator=g)


@pytest.mark.parametrize("targets,use_rslora",
                         [("all-linear", False), (["q_proj", "v_proj"], True)])
def test_saved_adapter_loads_in_peft_and_back(lora, base_model, tmp_path, targets, use_rslora):
    model = lora.inject_lora(copy.deepcopy(base_model), targets, r=8, alpha=16, dropout=0.05,
                             use_rslora=use_rslora)
    randomise(lora.lora_layers(model))
    model.eval()
    ids = batch(model)
    with torch.no_grad():
        expected = model(ids).logits
    lora.save_adapter(model, tmp_path / "ours")

    # peft loads it: same keys as peft's own save, same outputs
    peft_model = PeftModel.from_pretrained(copy.deepcopy(base_model), tmp_path / "ours").eval()
    with torch.no_grad():
        assert max_diff(peft_model(ids).logits, expected) <= TOL
    peft_model.save_pretrained(tmp_path / "peft")
    ours_keys = set(load_file(tmp_path / "ours" / "adapter_model.safetensors"))
    assert ours_keys == set(load_file(tmp_path / "peft" / "adapter_model.safetensors"))
    config = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (8, 16, use_rslora)

    # and we load peft's save
    back = lora_io.load_adapter(lora, copy.deepcopy(base_model), tmp_path / "peft").eval()
    with torch.no_grad():
        assert max_diff(back(ids).logits, expected) <= TOL
    assert lora.count_parameters(back)[1] == peft_model.get_nb_trainable_parameters()[1]


def test_merge_and_unload_round_trips_through_save_pretrained(lora, base_model, tmp_path):
    model = lora.inject_lora(copy.deepcopy(base_model), "all-linear", r=4, alpha=8)
    randomise(lora.lora_layers(model), seed=1)
    model.eval()
    ids = batch(model, seed=1)
    with torch.no_grad():
        expected = model(ids).logits
    theirs = get_peft_model(copy.deepcopy(base_model), LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear"))
    state = lora.adapter_state_dict(model)
    theirs.load_state_dict({k.replace(".weight", ".default.weight"): v for k, v in state.items()},
                           strict=False)
    theirs = theirs.merge_and_unload()

    merged = lora.merge_and_unload(model)
    assert merged is model and not lora.lora_layers(merged)
    assert all(type(m) is not lora.LoRALinear for m in merged.modules())
    assert set(merged.state_dict()) == set(base_model.state_dict())
    for key, value in theirs.state_dict().items():
        assert max_diff(merged.state_dict()[key], value) <= TOL, key
    with torch.no_grad():  # merging only reorders fp32 sums: equal relative to the logits' scale
        assert max_diff(merged(ids).logits, expected) <= 1e-6 * expected.abs().max().item() + 1e-5
    merged.save_pretrained(tmp_path / "merged")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert type(reloaded) is type(base_model)
    with torch.no_grad():
        assert max_diff(reloaded(ids).logits, merged(ids).logits) <= TOL


# --- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("r,match", [(0, "r=0"), (-2, "r=-2"), (17, "r=17"), (2.5, "r=2.5")])
def test_bad_rank_is_rejected(lora, r, match):
    with pytest.raises(ValueError, match=match):
        lora.LoRALinear(nn.Linear(16, 32), r=r, alpha=8)


def test_non_linear_base_is_rejected(lora):
    with pytest.raises(TypeError, match="Embedding"):
        lora.LoRALinear(nn.Embedding(10, 4), r=2, alpha=4)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(target_modules=["mlp"]), TypeError, "model.layers.0.mlp.*Qwen2MLP"),
    (dict(target_modules=["q_proj", "qproj"]), ValueError, "'qproj' matches no module"),
    (dict(target_modules=["proj"]), ValueError, "'proj' matches no module"),
    (dict(target_modules="q_proj"), ValueError, "give a list"),
    (dict(target_modules=["k_proj"], r=100), ValueError,
     r"model.layers.0.self_attn.k_proj: LoRA rank r=100 exceeds min\(in_features, out_features\)"),
])
def test_bad_targets_are_rejected_before_the_model_changes(lora, base, kwargs, error, match):
    before = {k: v.clone() for k, v in base.state_dict().items()}
    with pytest.raises(error, match=match):
        lora.inject_lora(base, **{"r": 4, "alpha": 8, **kwargs})
    assert not lora.lora_layers(base)
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())


def test_injecting_twice_is_rejected(lora, base):
    lora.inject_lora(base, ["q_proj"], r=2, alpha=4)
    with pytest.raises(ValueError, match="already has LoRA"):
        lora.inject_lora(base, ["v_proj"], r=2, alpha=4)


def other_base(hidden: int, layers: int) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(
        hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, vocab_size=256, tie_word_embeddings=True))


def test_adapter_for_a_different_base_is_rejected(lora, base_model, tmp_path):
    model = lora.inject_lora(copy.deepcopy(base_model), ["q_proj", "down_proj"], r=4, alpha=8)
    lora.save_adapter(model, tmp_path)
    wrong_shapes = other_base(64, base_model.config.num_hidden_layers)
    with pytest.raises(ValueError, match=r"different base model.*layers.0.mlp.down_proj|"
                                         r"different base model.*layers.0.self_attn.q_proj"):
        lora_io.load_adapter(lora, wrong_shapes, tmp_path)
    assert not lora.lora_layers(wrong_shapes)  # left unchanged

    # same shapes, fewer layers: modules of the adapter are missing in this model
    config = base_model.config.to_dict()
    config.update(num_hidden_layers=2, layer_types=config["layer_types"][:2])
    fewer = Qwen2ForCausalLM(Qwen2Config(**config))
    with pytest.raises(ValueError, match=r"different base model.*this model lacks "
                                         r"\['model.layers.2.mlp.down_proj.lora_A.weight'"):
        lora_io.load_adapter(lora, fewer, tmp_path)

    # peft fails too, less clearly (a size mismatch from torch)
    with pytest.raises(RuntimeError, match="size mismatch"):
        PeftModel.from_pretrained(other_base(64, base_model.config.num_hidden_layers), tmp_path)


def test_merge_twice_and_nan_merge(lora):
    torch.manual_seed(0)
    layer = lora.LoRALinear(nn.Linear(8, 6), r=2, alpha=4)
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    w0 = layer.base_layer.weight.detach().clone()
    delta = layer.get_delta_weight().detach()
    layer.merge()
    with pytest.warns(UserWarning, match="already merged"):
        layer.merge()
    assert max_diff(layer.base_layer.weight, w0 + delta) <= TOL
    layer.unmerge()
    with pytest.warns(UserWarning, match="not merged"):
        layer.unmerge()
    with torch.no_grad():
        layer.lora_B.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        layer.merge()
    assert not layer.merged and torch.isfinite(layer.base_layer.weight).all()


def test_teaching_numbers(lora):
    full, small = lora.lora_parameter_count(4096, 4096, 8)
    assert (full, small) == (16_777_216, 65_536)
    assert round(100 * (1 - small / full), 1) == 99.6
    est = lora.estimate_training_memory(7_000_000_000, 7_000_000_000, "mixed")
    assert est["total"] == 16 * 7_000_000_000
    with pytest.raises(ValueError, match="precision"):
        lora.estimate_training_memory(1, 1, "fp8")


def test_hidden_checks_leave_the_global_rng_alone():
    checks = load_reference("step4_lora", "hidden_checks").HIDDEN_CHECKS
    ref = load_reference("step4_lora", "lora_exercise")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    checks["lora_linear_init_hidden"](ref, ref)
    assert torch.equal(torch.rand(3), expected)
