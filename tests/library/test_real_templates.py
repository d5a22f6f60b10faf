"""Real chat templates (Qwen2.5's with its real tokenizer; Llama 3.2, Mistral Nemo, Gemma 2) on
real conversations (LLaMA-Factory's demo data): the default-system-prompt rule, step 1's
hand-written ChatML vs apply_chat_template, labels for templates without `{% generation %}`
markers, and TRL's assistant_only_loss. The expected counts are the comparison table of step
2's text. Fixtures and their sources: tests/fixtures/templates/README.md.
"""
from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from course.data import IGNORE_INDEX, tokenize_for_sft
from course.evaluate import chat_prompt
from course.grading import load_reference
from course.models import load_tokenizer
from course.templates import (TemplateError, assistant_char_spans, default_system_prompt,
                              has_generation_markers, render, with_default_system)
from course.userdata import load_user_file
from real_fixtures import FAMILIES, LLAMAFACTORY, QWEN_DIR, real_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

QWEN_DEFAULT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
# family -> (end-of-turn token, does the template trim contents)
END_OF_TURN = {"qwen2.5": ("<|im_end|>", False), "llama3.2": ("<|eot_id|>", True),
               "mistral-nemo": ("</s>", False), "gemma2": ("<end_of_turn>", True)}
N = 332  # accepted conversations of the three text fixtures: 200 + 91 + 41


def template_ids(tok, messages: list[dict]) -> list[int]:
    return list(tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


@pytest.fixture(scope="module")
def conversations() -> list[list[dict]]:
    out = []
    for name in ("alpaca_en_demo.json", "identity.json", "glaive_toolcall_en_demo.json"):
        out += [r["messages"] for r in load_user_file(LLAMAFACTORY / name).records]
    assert len(out) == N
    return out


@pytest.fixture(scope="module")
def toks() -> dict:
    return {family: real_tokenizer(family) for family in FAMILIES}


@pytest.fixture(scope="module")
def step1():
    return load_reference("step1_data", "data_exercise")


@pytest.fixture(scope="module")
def step2():
    return load_reference("step2_masking", "masking_exercise")


def test_the_qwen_fixture_is_the_real_tokenizer():
    tok = AutoTokenizer.from_pretrained(QWEN_DIR)
    assert len(tok) == 151665 and tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok("Hello world")["input_ids"] == [9707, 1879]
    assert tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [151644, 151645]
    assert not has_generation_markers(tok.chat_template)


# --- the default system prompt --------------------------------------------------------------
def test_default_system_prompt_rule(toks):
    assert default_system_prompt(toks["qwen2.5"]) == QWEN_DEFAULT
    for family in ("llama3.2", "mistral-nemo", "gemma2"):
        assert default_system_prompt(toks[family]) is None, family
    assert default_system_prompt(load_tokenizer()) is None  # the course's own template
    user = [{"role": "user", "content": "Hi"}]
    # Qwen2.5 writes its default into every conversation without a system turn ...
    assert render(toks["qwen2.5"], user).startswith(f"<|im_start|>system\n{QWEN_DEFAULT}<|im_end|>")
    # ... so making it explicit changes nothing the model sees, and nothing when one is given.
    explicit = with_default_system(user, toks["qwen2.5"])
    assert explicit == [{"role": "system", "content": QWEN_DEFAULT}] + user
    assert render(toks["qwen2.5"], explicit) == render(toks["qwen2.5"], user)
    own = [{"role": "system", "content": "Be brief."}] + user
    assert with_default_system(own, toks["qwen2.5"]) == own
    # Llama 3.2 always writes a dated system header, empty without a system turn: no default.
    assert "Cutting Knowledge Date: December 2023" in render(toks["llama3.2"], user)


def test_load_split_for_a_model_makes_the_default_explicit(toks):
    from course.data import load_split

    qwen = load_split("validation", tokenizer=toks["qwen2.5"])
    plain = load_split("validation")
    default = [{"role": "system", "content": QWEN_DEFAULT}]
    added = 0
    for mine, theirs in zip(qwen["messages"], plain["messages"]):
        own = theirs[0]["role"] == "system"  # a conversation's own system turn is kept
        assert mine == (theirs if own else default + theirs)
        added += not own
    assert added > 0
    assert load_split("validation", tokenizer=load_tokenizer())["messages"] == plain["messages"]


# --- step 1: hand-written ChatML vs the real template ----------------------------------------
@pytest.mark.parametrize("family,raw,explicit", [
    ("qwen2.5", 0, N),       # equal once the default system prompt is explicit, never before
    ("llama3.2", 0, 0),      # other formats: ChatML by hand is not their template
    ("mistral-nemo", 0, 0),
    ("gemma2", 0, 0),
])
def test_format_conversation_vs_apply_chat_template(step1, toks, conversations, family, raw,
                                                   explicit):
    tok = toks[family]
    same = sum(step1.format_conversation(m, tok)["text"] == render(tok, m)
               for m in conversations)
    same_explicit = sum(
        step1.format_conversation(with_default_system(m, tok), tok)["text"] == render(tok, m)
        for m in conversations)
    assert (same, same_explicit) == (raw, explicit)
    if explicit:  # the token ids agree too
        for m in conversations[:50]:
            m = with_default_system(m, tok)
            assert step1.format_conversation(m, tok)["input_ids"] == template_ids(tok, m)


# --- labels for every template ---------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_labels_train_exactly_the_answers_and_their_end_token(toks, conversations, family):
    """No template in the fixtures has {% generation %} markers: the library's own mask is all
    zeros on every conversation; tokenize_for_sft still trains each answer and its end token."""
    tok = toks[family]
    end, trims = END_OF_TURN[family]
    assert not has_generation_markers(tok.chat_template)
    raw = tok.apply_chat_template(conversations[0], tokenize=True, return_dict=True,
                                  return_assistant_tokens_mask=True)
    assert not any(raw["assistant_masks"])  # what tokenize_for_sft used to return as labels
    for i, messages in enumerate(conversations):
        enc = tokenize_for_sft(messages, tok, record_id=i)
        assert enc["input_ids"] == template_ids(tok, messages), i
        trained = [t for t in enc["labels"] if t != IGNORE_INDEX]
        assert trained, i
        answers = [m["content"].strip() if trims else m["content"]
                   for m in messages if m["role"] == "assistant"]
        assert tok.decode(trained) == "".join(a + end for a in answers), i


def test_hand_labels_equal_the_library_on_qwen(step2, toks, conversations):
    """Step 2's labels, built turn by turn without the template, equal the template's on
    Qwen2.5 (ChatML) on every conversation, once the default system prompt is explicit."""
    tok = toks["qwen2.5"]
    for i, messages in enumerate(conversations):
        messages = with_default_system(messages, tok)
        assert step2.labels_for_conversation(messages, tok) == tokenize_for_sft(messages, tok), i
    bare = conversations[0]  # without it, the template has a system turn the hand labels lack
    assert step2.labels_for_conversation(bare, tok) != tokenize_for_sft(bare, tok)


def test_a_template_that_rewrites_earlier_turns_is_an_error(toks):
    """Mistral Nemo writes the system prompt into the user turn only when that turn is the last
    message (at inference): a training conversation, which ends with an answer, is rendered
    without it, so the prompt before an answer is no prefix of the whole. An error that names
    the record, never labels that are silently wrong."""
    tok = toks["mistral-nemo"]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who?"},
                {"role": "assistant", "content": "Tom."}, {"role": "user", "content": "Where?"},
                {"role": "assistant", "content": "Home."}]
    with pytest.raises(TemplateError, match="turn 2: .*rewrites earlier turns"):
        assistant_char_spans(messages, tok)
    with pytest.raises(ValueError, match="record data.jsonl:7: turn 2"):
        tokenize_for_sft(messages, tok, record_id="data.jsonl:7")
    assert "Be brief." not in render(tok, messages)  # the system prompt is silently gone
    assert "Be brief." in render(tok, messages[:2], add_generation_prompt=True)
    with pytest.raises(ValueError, match="turn 2"):  # one exchange: the same
        tokenize_for_sft(messages[:3], tok)
    assert tokenize_for_sft(messages[1:], tok)  # without a system prompt: fine


def test_no_assistant_turn_trains_nothing_and_a_hidden_answer_is_an_error(toks):
    tok = toks["qwen2.5"]
    prompt_only = [{"role": "user", "content": "Who?"}]
    assert set(tokenize_for_sft(prompt_only, tok)["labels"]) == {IGNORE_INDEX}
    broken = tok.__class__.from_pretrained(QWEN_DIR)
    broken.chat_template = ("{% for m in messages %}{% if m.role != 'assistant' %}"
                            "{{ m.content }}{% endif %}{% endfor %}")  # drops the answers
    with pytest.raises(ValueError, match="record 3: turn 1: the answer's text does not appear"):
        tokenize_for_sft(prompt_only + [{"role": "assistant", "content": "Tom."}], broken,
                         record_id=3)


# --- TRL's assistant_only_loss -----------------------------------------------------------------
def trl_labels(tok, messages: list[dict]) -> tuple[list[int], list[int]] | None:
    """What TRL 1.16's SFTTrainer(assistant_only_loss=True) trains: it swaps in its training
    template for known templates without markers (and refuses others), then masks with
    transformers' assistant mask. None when TRL refuses the template."""
    from trl.chat_template_utils import get_training_chat_template

    try:
        template = get_training_chat_template(tok) or tok.chat_template
    except ValueError:
        return None
    enc = tok.apply_chat_template(messages, chat_template=template, tokenize=True,
                                  return_dict=True, return_assistant_tokens_mask=True)
    ids = list(enc["input_ids"])
    return ids, [t if m else IGNORE_INDEX for t, m in zip(ids, enc["assistant_masks"])]


@pytest.mark.parametrize("family,extra_per_answer", [
    ("course", []),                       # its template has markers: TRL uses it, equal
    ("qwen2.5", ["\n", "\n"]),            # after '<|im_start|>assistant' and after '<|im_end|>'
    ("gemma2", ["\n"]),                   # after '<end_of_turn>'
    ("llama3.2", None),                   # TRL refuses: no training template for it
    ("mistral-nemo", None),
])
def test_labels_vs_trl_assistant_only_loss(toks, conversations, family, extra_per_answer):
    tok = load_tokenizer() if family == "course" else toks[family]
    for i, messages in enumerate(conversations[:120] if family != "course" else conversations):
        if family == "course":  # the embedded tokenizer's byte-level BPE has its own vocabulary
            messages = [{"role": m["role"], "content": m["content"][:200]} for m in messages]
        messages = with_default_system(messages, tok)
        ours = tokenize_for_sft(messages, tok)
        theirs = trl_labels(tok, messages)
        if extra_per_answer is None:
            assert theirs is None
            continue
        ids, labels = theirs
        assert ids == ours["input_ids"], i  # the same text: only the mask differs
        extra = [tok.decode([t]) for t, a, b in zip(ids, labels, ours["labels"]) if a != b]
        assert all(b == IGNORE_INDEX for a, b in zip(labels, ours["labels"]) if a != b), i
        answers = sum(m["role"] == "assistant" for m in messages)
        assert extra == extra_per_answer * answers, i


# --- training and evaluation prompts ---------------------------------------------------------
def test_chat_prompt_is_the_start_of_the_training_text(step2, toks):
    """Data loaded for the model (tokenizer=...) carries the template's default system prompt
    explicitly, so step 2's hand-built training ids start with exactly the evaluation prompt."""
    tok = toks["qwen2.5"]
    data = load_user_file(LLAMAFACTORY / "identity.json", tokenizer=tok)
    for record in data.records[:40]:
        messages = record["messages"]
        assert messages[0] == {"role": "system", "content": QWEN_DEFAULT}
        train_ids = step2.labels_for_conversation(messages, tok)["input_ids"]
        prompt_ids = tok(chat_prompt(tok, messages), add_special_tokens=False)["input_ids"]
        assert train_ids[:len(prompt_ids)] == prompt_ids
        answer = tok(messages[-1]["content"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
        assert train_ids[len(prompt_ids):] == answer + tok("\n")["input_ids"]
