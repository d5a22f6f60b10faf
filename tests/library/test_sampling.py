"""course.sampling equals transformers' sampling: TemperatureLogitsWarper then TopPLogitsWarper,
softmax, one torch.multinomial draw -- the same distribution and, with the same generator
state, the same token; temperature 0 is greedy. Also the classic mistakes it must not make."""
from __future__ import annotations

import pytest
import torch
from transformers import (LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper)

from course.sampling import next_token_probs, sample_next_token, top_p_filter

CASES = [(1.0, 1.0), (0.7, 0.9), (1.3, 0.5), (0.5, 0.95), (2.0, 0.8), (0.9, 0.1)]


def library_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers(torch.zeros(logits.shape[0], 1, dtype=torch.long), logits).softmax(dim=-1)


def logits_batch(seed: int, batch: int = 4, vocab: int = 300) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, vocab, generator=g) * 3


@pytest.mark.parametrize("temperature,top_p", CASES)
def test_same_distribution_and_same_tokens_as_transformers(temperature, top_p):
    for seed in range(5):
        logits = logits_batch(seed)
        theirs = library_probs(logits, temperature, top_p)
        torch.testing.assert_close(next_token_probs(logits, temperature, top_p), theirs,
                                   rtol=0, atol=1e-7)
        for draw in range(10):
            g1 = torch.Generator().manual_seed(100 * seed + draw)
            g2 = torch.Generator().manual_seed(100 * seed + draw)
            ours = sample_next_token(logits, temperature, top_p, generator=g1)
            library = torch.multinomial(theirs, 1, generator=g2).squeeze(1)
            assert torch.equal(ours, library)


def test_temperature_zero_is_greedy_and_the_same_seed_repeats():
    logits = logits_batch(1)
    assert torch.equal(sample_next_token(logits, 0.0), logits.argmax(-1))
    a = sample_next_token(logits, 1.0, 0.9, torch.Generator().manual_seed(3))
    b = sample_next_token(logits, 1.0, 0.9, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_top_p_keeps_the_token_that_crosses_the_threshold():
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    kept = torch.isfinite(top_p_filter(logits, 0.6))
    assert kept.tolist() == [[True, True, False]]  # 0.5 < 0.6: 0.3 crosses it and stays
    probs = next_token_probs(logits, 1.0, 0.6)
    torch.testing.assert_close(probs, torch.tensor([[0.625, 0.375, 0.0]]))  # renormalised
    assert torch.isfinite(top_p_filter(logits, 0.01)).sum() == 1  # at least one token


def test_temperature_is_applied_before_top_p():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    right = next_token_probs(logits, 0.5, 0.8)
    wrong = top_p_filter(logits, 0.8).softmax(-1)  # top-p on the untempered logits first
    # p = 0.865, 0.117, ... at T 0.5: one token; untempered 0.644, 0.237, ...: two
    assert torch.isfinite(top_p_filter(logits / 0.5, 0.8)).sum() == 1
    assert torch.isfinite(top_p_filter(logits, 0.8)).sum() == 2
    torch.testing.assert_close(right, library_probs(logits, 0.5, 0.8))
    assert not torch.allclose(right, (wrong.log() / 0.5).softmax(-1))


@pytest.mark.parametrize("kwargs,match", [(dict(temperature=-1.0), "temperature"),
                                          (dict(top_p=0.0), "top_p"),
                                          (dict(top_p=1.5), "top_p")])
def test_bad_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_next_token(logits_batch(0), **{"temperature": 1.0, **kwargs})


def test_equals_generate_with_sampling_on_a_tiny_model():
    """Token by token, the loop with sample_next_token writes what generate(do_sample=True)
    writes from the same seed."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, vocab_size=97)).eval()
    ids = torch.tensor([[5, 17, 42]])
    torch.manual_seed(11)
    library = model.generate(ids, do_sample=True, temperature=0.8, top_p=0.9, top_k=0,
                             max_new_tokens=12, min_new_tokens=12, eos_token_id=None,
                             pad_token_id=0)
    torch.manual_seed(11)
    ours = ids
    with torch.no_grad():
        for _ in range(12):
            logits = model(ours).logits[:, -1, :]
            ours = torch.cat([ours, sample_next_token(logits, 0.8, 0.9)[:, None]], dim=1)
    assert torch.equal(ours, library)
