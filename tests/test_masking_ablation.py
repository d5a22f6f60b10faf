"""Step 2's experiment (course/experiments/masking_ablation.py): the three label variants, and a
tiny run of the CLI that writes the JSON and the plot. The real figures come from
`make bench-masking` (benchmarks/results/masking_ablation.json); none are asserted here."""
from __future__ import annotations

import json

import pytest
import torch

from course.data import IGNORE_INDEX, tokenize_for_sft
from course.experiments import masking_ablation as ablation
from course.models import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_variant_labels(tok):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who?"},
                {"role": "assistant", "content": "Tom."}, {"role": "user", "content": "Where?"},
                {"role": "assistant", "content": "Home."}]
    enc = tokenize_for_sft(messages, tok)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    trained = [t for t in ablation.variant_labels(enc, "assistant_only", end) if t != IGNORE_INDEX]
    assert tok.decode(trained) == "Tom.<|im_end|>Home.<|im_end|>"
    assert ablation.variant_labels(enc, "no_mask", end) == enc["input_ids"]
    without = [t for t in ablation.variant_labels(enc, "no_end_token", end) if t != IGNORE_INDEX]
    assert tok.decode(without) == "Tom.Home."
    with pytest.raises(ValueError, match="unknown variant"):
        ablation.variant_labels(enc, "everything", end)


def test_cli_writes_results_and_plot(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "ablation.json"
    try:
        assert ablation.main(["--steps", "1", "--batch-size", "2", "--eval-limit", "2",
                              "--max-new-tokens", "3", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    res = json.loads(out.read_text())
    assert set(res["results"]) == {"base", *ablation.VARIANTS}
    for name in ablation.VARIANTS:
        r = res["results"][name]
        assert len(r["train_loss"]) == 1 and 0 <= r["exact_match"] <= 1
        assert 0 <= r["stop_rate"] <= 1 and r["answer_loss"] > 0
    assert out.with_suffix(".png").stat().st_size > 10_000
