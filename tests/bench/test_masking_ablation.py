"""Step 2's experiment (course/masking_ablation.py): the three label variants, the noisy-prompt
regime, the per-token loss split, and a tiny run of the CLI (benchmarks/masking_ablation.py) that
writes the JSON and the plot. The real figures come from `make bench-masking`
(benchmarks/results/masking_ablation*.json; tests/text/test_teaching_text.py checks the text quoting
them)."""
from __future__ import annotations

import json

import pytest
import torch

from course.data import IGNORE_INDEX, tokenize_for_sft
from benchmarks import masking_ablation as cli
from course import masking_ablation as ablation
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


def test_prompt_noise_touches_user_turns_only():
    records = [{"messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Who?"},
                             {"role": "assistant", "content": "Tom."}]}]
    noisy = ablation.with_prompt_noise(records, 5, seed=0)
    assert records[0]["messages"][1]["content"] == "Who?"  # the input is not changed
    system, user, answer = noisy[0]["messages"]
    assert system["content"] == "Be brief." and answer["content"] == "Tom."
    assert user["content"].startswith("Who?\n\n") and len(user["content"].split()) == 6
    assert ablation.with_prompt_noise(records, 0, seed=0) == records


def test_cli_writes_results_and_plot(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "ablation.json"
    try:
        assert cli.main(["--steps", "1", "--batch-size", "2", "--eval-limit", "2",
                              "--max-new-tokens", "3", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    res = json.loads(out.read_text())
    assert set(res["results"]) == {"base", *ablation.VARIANTS}
    for name in ablation.VARIANTS:
        r = res["results"][name]
        assert len(r["train_loss"]) == 1 and 0 <= r["exact_match"] <= 1
        assert 0 <= r["stop_rate"] <= 1 and r["answer_loss"] > 0 and r["prompt_loss"] > 0
        assert len(r["train_split"]) == 1 and len(r["train_split"][0]) == 2
        assert 0 <= r["continuation"]["writes_user_turn"] <= 1
    assert out.with_suffix(".png").stat().st_size > 10_000
