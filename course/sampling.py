"""Decoding: turn a model's next-token logits into the next token, with temperature and top-p.

    token = sample_next_token(logits, temperature=0.7, top_p=0.9, generator=g)   # (B,) ids

The same computation as transformers' `generate(do_sample=True, temperature=..., top_p=...)`:
its TemperatureLogitsWarper, then its TopPLogitsWarper, then a softmax and one
`torch.multinomial` draw, so with the same logits and the same generator state both pick the
same token (tests/library/test_sampling.py). Temperature 0 is greedy (argmax).
"""
from __future__ import annotations

import torch


def top_p_filter(scores: torch.Tensor, top_p: float, min_tokens_to_keep: int = 1
                 ) -> torch.Tensor:
    """`scores` (B, V) with every token outside the nucleus set to -inf: the smallest set of
    most likely tokens whose probabilities add up to more than `top_p`. The token that crosses
    the threshold is kept (dropping it leaves less than top_p); at least `min_tokens_to_keep`."""
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_p == 1.0:
        return scores
    # ascending order, as transformers does: a token goes when the probability of all the
    # tokens less likely than it, itself included, is at most 1 - top_p
    sorted_scores, order = torch.sort(scores, descending=False, dim=-1)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative <= (1 - top_p)
    drop_sorted[..., -min_tokens_to_keep:] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return scores.masked_fill(drop, float("-inf"))


def next_token_probs(logits: torch.Tensor, temperature: float, top_p: float = 1.0
                     ) -> torch.Tensor:
    """The distribution the next token is drawn from: softmax(top_p_filter(logits / T)),
    renormalised over the nucleus (float32). (B, V) -> (B, V)."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0 here; 0 means greedy (sample_next_token)")
    scores = logits.float() / temperature   # temperature first: it changes which tokens fit in p
    return top_p_filter(scores, top_p).softmax(dim=-1)


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token ids (B,) from logits (B, V): greedy at temperature 0, else one draw from
    `next_token_probs(logits, temperature, top_p)` with `generator`."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be (batch, vocab), got shape {tuple(logits.shape)}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = next_token_probs(logits, temperature, top_p)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
