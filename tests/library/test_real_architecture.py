"""The course's code of every step on the real architecture: a randomly initialised model built
from Qwen2.5-0.5B-Instruct's published configuration (2 layers instead of 24, every other size
as published: hidden 896, 14 heads, 2 key-value heads, vocabulary 151,936) with Qwen2.5's real
tokenizer, loaded through COURSE_MODEL like any model of your own.

format (step 1) -> labels (step 2, via step 3's tokenize_split) -> two optimizer steps of step
3's loop -> LoRA on "all-linear" and on q_proj/v_proj (step 4) -> adapter saved, loaded by
peft's PeftModel.from_pretrained -> merged -> generate; training and evaluation prompts built
identically. Fixtures: tests/fixtures/templates/README.md.
"""
from __future__ import annotations

import json
import math
import time

import pytest
import torch
from peft import PeftModel
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from course.data import tokenize_for_sft
from course.evaluate import chat_prompt, generate
from course.grading import load_reference
from course.models import load_base_model, load_tokenizer
from course.userdata import load_user_file
from real_fixtures import LLAMAFACTORY, QWEN_DIR

pytestmark = [pytest.mark.usefixtures("one_thread"),  # tests/conftest.py
              pytest.mark.xdist_group("real_architecture")]

LAYERS = 2
QWEN_DEFAULT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A folder like a downloaded model: config (2 layers), random weights, the real tokenizer."""
    folder = tmp_path_factory.mktemp("qwen2.5-random")
    published = json.loads((QWEN_DIR / "config.json").read_text(encoding="utf-8"))
    config = Qwen2Config(**{**published, "num_hidden_layers": LAYERS,
                            "max_window_layers": LAYERS})
    assert (config.hidden_size, config.num_attention_heads, config.vocab_size) == (896, 14, 151936)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)  # half the bytes
    AutoTokenizer.from_pretrained(QWEN_DIR).save_pretrained(folder)
    return folder


def test_every_step_on_a_qwen25_shaped_model(model_dir, monkeypatch, tmp_path):
    start = time.perf_counter()
    monkeypatch.setenv("COURSE_MODEL", str(model_dir))
    step1 = load_reference("step1_data", "data_exercise")
    sft = load_reference("step3_sft", "sft_exercise")
    lora = load_reference("step4_lora", "lora_exercise")
    tok = load_tokenizer()
    model = load_base_model(device="cpu")
    assert model.config.num_hidden_layers == LAYERS and len(tok) == 151665

    # data for this model: the template's default system prompt made explicit
    records = load_user_file(LLAMAFACTORY / "identity.json", tokenizer=tok).records[:16]
    conversations = [r["messages"] for r in records]
    assert all(m[0]["content"] == QWEN_DEFAULT for m in conversations)

    # step 1: ChatML by hand == the real template
    for messages in conversations:
        ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        assert step1.format_conversation(messages, tok)["input_ids"] == list(ids)

    # step 2 (through step 3's tokenize_split): labels by hand == the library's
    examples = sft.tokenize_split(records, tok, max_length=128)
    assert len(examples) == len(records)
    for record, example in zip(records, examples):
        assert example == tokenize_for_sft(record["messages"], tok, 128, record["id"])
        assert any(t != -100 for t in example["labels"])

    # training and evaluation prompts are built identically
    for messages, example in zip(conversations, examples):
        prompt = tok(chat_prompt(tok, messages), add_special_tokens=False)["input_ids"]
        assert example["input_ids"][:len(prompt)] == prompt

    # step 3: two optimizer steps of the loop, full fine-tuning
    cfg = sft.FinetuneConfig(batch_size=4, max_steps=2, learning_rate=1e-3, warmup_steps=0,
                             max_length=128, shuffle=False, output_dir=str(tmp_path / "run"))
    pad = tok.pad_token_id
    probe = sft.eval_batches(examples[:4], cfg, pad)
    before = sft.evaluate(model, probe)["loss"]
    optimizer = sft.make_optimizer(model, cfg)
    scheduler = sft.make_scheduler(optimizer, 0, cfg.max_steps)
    for step in range(cfg.max_steps):
        out = sft.train_step(model, optimizer, scheduler,
                             sft.micro_batches_for_step(examples, step, cfg, pad),
                             cfg.max_grad_norm)
        assert math.isfinite(out["loss"]) and out["tokens"] > 0
    after = sft.evaluate(model, probe)["loss"]
    assert after < before  # the first batch was trained on
    del model, optimizer, scheduler

    # step 4: LoRA, saved in peft's format, loaded by peft, merged, generating
    batch = sft.eval_batches(examples[:2], cfg, pad)[0]
    prompts = [chat_prompt(tok, m) for m in conversations[:2]]
    for targets, adapted in [("all-linear", 7 * LAYERS), (["q_proj", "v_proj"], 2 * LAYERS)]:
        ours = lora.inject_lora(load_base_model(device="cpu"), targets, r=4, alpha=8.0)
        assert len(lora.lora_layers(ours)) == adapted
        opt = sft.make_optimizer(ours, cfg)
        sched = sft.make_scheduler(opt, 0, 1)
        out = sft.train_step(ours, opt, sched, sft.micro_batches_for_step(examples, 0, cfg, pad),
                             cfg.max_grad_norm)
        assert math.isfinite(out["loss"])
        folder = lora.save_adapter(ours, tmp_path / f"adapter-{len(str(targets))}")
        peft_model = PeftModel.from_pretrained(load_base_model(device="cpu"), folder).eval()
        ours.eval()
        with torch.no_grad():
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            expected = ours(**inputs).logits
            assert torch.allclose(peft_model(**inputs).logits, expected, atol=1e-4)
            merged = lora.merge_and_unload(ours)
            assert torch.allclose(merged(**inputs).logits, expected, atol=1e-4)
        texts = generate(merged, tok, prompts, max_new_tokens=4)
        assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
        del ours, peft_model, merged, opt, sched
    print(f"\nreal architecture, every step: {time.perf_counter() - start:.1f} s")
