"""Tokenizer, chat template, embedded model, generators, splits and clear errors."""
from __future__ import annotations

import json
import random
import re

import pytest
import torch
from safetensors.torch import load_file

from course.build import make_data
from course.build.stories import generate_stories, make_names
from course.build.tokenizer import ENDOFTEXT, IM_END, IM_START, PAD
from course.data import DataFormatError, iter_jsonl, load_split, tokenize_for_sft, validate_file
from course.evaluate import chat_prompt, exact_match, generate
from course.models import ModelNotAvailableError, count_parameters, load_base_model, load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def model():
    return load_base_model(device="cpu")


# --- tokenizer and chat template -----------------------------------------------------------------
def test_special_tokens_are_single_distinct_ids(tok):
    ids = [tok.convert_tokens_to_ids(t) for t in (ENDOFTEXT, IM_START, IM_END, PAD)]
    assert ids == [0, 1, 2, 3]
    assert tok.eos_token == IM_END and tok.pad_token == PAD
    assert tok.pad_token_id != tok.eos_token_id, "pad == EOS would mask the end token"
    assert tok("<|im_start|>user\nHi<|im_end|>", add_special_tokens=False).input_ids[0] == 1
    assert 3500 <= len(tok) <= 4200


def test_round_trip_on_stories_and_unseen_names(tok):
    _, heldout = make_data.name_pools()
    for _, story in generate_stories(50, heldout, seed=7):
        assert tok.decode(tok(story, add_special_tokens=False).input_ids) == story
    text = "Ünïcode & emoji 🙂 survive byte-level BPE.\n\n  Twice."
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text


SPLIT_SAMPLES = ["Mira picked up 12 coins. They found 3 red kites!",
                 "Words: hill calm 5 white. Again: hill calm 5 white.",
                 "How many?\n\nTom's friend said: \"Go!\"  Twice.\n"]


def test_committed_tokenizer_encodes_as_it_was_trained(tok):
    """`AutoTokenizer` loads a qwen2 checkpoint as `Qwen2Tokenizer`, which imposes its own
    pre-tokenizer. The committed tokenizer.json (what pretraining used) must agree with it on
    stories, word lists, numbers and chat text, or the model reads text it never saw."""
    from tokenizers import Tokenizer

    from course.models import EMBEDDED_MODEL_DIR

    trained = Tokenizer.from_file(str(EMBEDDED_MODEL_DIR / "tokenizer.json"))
    _, heldout = make_data.name_pools()
    texts = SPLIT_SAMPLES + [story for _, story in generate_stories(50, heldout, seed=3)]
    texts.append(chat_prompt(tok, load_split("test")[0]["messages"]))
    for text in texts:
        assert tok(text, add_special_tokens=False).input_ids == trained.encode(
            text, add_special_tokens=False).ids, text


def test_trained_tokenizer_splits_like_qwen2(tmp_path):
    """A freshly trained tokenizer, saved next to a qwen2 config and reloaded through
    AutoTokenizer, encodes exactly as the in-memory one that pretraining tokenizes with."""
    from transformers import AutoTokenizer, Qwen2Config
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    from course.build.tokenizer import QWEN2_SPLIT, save_tokenizer, train_tokenizer

    assert QWEN2_SPLIT == PRETOKENIZE_REGEX
    names, _ = make_data.name_pools()
    stories = [story for _, story in generate_stories(300, names, seed=5)]
    trained = train_tokenizer(stories + SPLIT_SAMPLES, vocab_size=600)
    save_tokenizer(trained, tmp_path)
    Qwen2Config(vocab_size=len(trained)).save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "Qwen2Tokenizer"
    for text in SPLIT_SAMPLES + stories[:20]:
        assert loaded(text, add_special_tokens=False).input_ids == trained(
            text, add_special_tokens=False).input_ids, text


def test_chat_template_matches_hand_built_chatml(tok):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Who?\n\nA story."},
                {"role": "assistant", "content": "Tom."},
                {"role": "user", "content": "Where?"},
                {"role": "assistant", "content": "Home."}]
    expected = ("<|im_start|>system\nBe brief.<|im_end|>\n"
                "<|im_start|>user\nWho?\n\nA story.<|im_end|>\n"
                "<|im_start|>assistant\nTom.<|im_end|>\n"
                "<|im_start|>user\nWhere?<|im_end|>\n"
                "<|im_start|>assistant\nHome.<|im_end|>\n")
    assert tok.apply_chat_template(messages, tokenize=False) == expected
    prompt = tok.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nWho?\n\nA story.<|im_end|>\n<|im_start|>assistant\n")

    enc = tokenize_for_sft(messages, tok)
    trained = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != -100]
    # the assistant's words AND its end token, for both turns; nothing else
    assert tok.decode(trained) == "Tom.<|im_end|>Home.<|im_end|>"
    assert enc["input_ids"] == tok(expected, add_special_tokens=False).input_ids
    assert enc["labels"][-1] == -100  # the newline after <|im_end|> is template, not answer


# --- embedded model ---------------------------------------------------------------------------
def test_embedded_model_loads_offline_and_is_small(model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert 1_000_000 <= count_parameters(model) <= 3_000_000


def test_greedy_generation_is_deterministic(model, tok):
    prompts = ["Once upon a time, there was a little girl named Quellin.", "One day, Tosk"]
    a = generate(model, tok, prompts, max_new_tokens=20, stop_at_end_token=False)
    b = generate(model, tok, prompts, max_new_tokens=20, stop_at_end_token=False)
    assert a == b and all(a)


def test_left_padded_batch_equals_one_by_one(model, tok):
    prompts = ["Short one.", "A much longer prompt about a boy named Dravo who went to the park."]
    batched = generate(model, tok, prompts, max_new_tokens=12, stop_at_end_token=False)
    single = [generate(model, tok, [p], max_new_tokens=12, stop_at_end_token=False)[0]
              for p in prompts]
    assert batched == single


def test_exact_match_needs_the_answer_and_the_stop(model, tok):
    test = load_split("test").select(range(8))
    em = exact_match(model, tok, test, progress=False, max_new_tokens=8)
    assert 0.0 <= em.score <= 1.0 and len(em.predictions) == 8
    assert set(em.per_task) <= set(make_data.TASKS)


# --- generators and splits ----------------------------------------------------------------------
def test_names_are_generated_and_many():
    names = make_names(5000, seed=1)
    assert len(set(names)) == 5000 and all(re.fullmatch(r"[A-Z][a-z]+", n) for n in names)
    assert make_names(50, seed=1) == names[:50]
    seen, heldout = make_data.name_pools()
    assert len(heldout) >= 1000 and not set(seen) & set(heldout)


def test_generators_are_deterministic():
    a, b = make_data.build_all(), make_data.build_all()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    docs = make_data.pretraining_documents(20, make_data.name_pools()[0], 3, 0.5)
    assert docs == make_data.pretraining_documents(20, make_data.name_pools()[0], 3, 0.5)


def test_retelling_repeats_every_fact_with_the_stories_cue_words():
    """The pretraining retelling is what makes copying a closed-class word pay off in plain text:
    each of its facts follows the same cue words as in the story ("felt calm")."""
    from course.build.stories import generate_stories, retelling
    for facts, story in generate_stories(60, make_data.name_pools()[0], seed=5):
        text = retelling(facts)
        for cue in (f" to the {facts.place}", f" a {facts.color} {facts.thing}",
                    f" up {facts.count} {facts.items}", f" felt {facts.feeling}"):
            assert cue in story and cue in text, (cue, story, text)
        shuffled = retelling(facts, random.Random(0))
        prefix = len("In short: ")
        assert sorted(shuffled[prefix:-1].split(". ")) == sorted(text[prefix:-1].split(". "))
    docs = make_data.pretraining_documents(50, make_data.name_pools()[0], 3, 0.5, 3, 1.0)
    assert all("\nIn short: " in d for d in docs)
    for doc in make_data.pretraining_documents(50, make_data.name_pools()[0], 3, 0.5, 3,
                                               echo_fraction=1.0):
        first, again = doc.split("\nWords: ")[1].split("\n")[0].split(". Again: ")
        assert again == first + "." and 6 <= len(first.split()) <= 10


def test_committed_data_is_byte_identical_to_a_fresh_build():
    assert make_data.check() == [], "run `make data` and commit"


def test_test_split_names_and_stories_never_occur_in_training():
    seen, heldout = make_data.name_pools()
    heldout = set(heldout)
    name_re = re.compile(r"\b[A-Z][a-z]+\b")

    def names_in(split):
        return {n for r in load_split(split) for m in r["messages"]
                for n in name_re.findall(m["content"])}

    test_names = names_in("test") & (set(seen) | heldout)
    assert test_names and test_names <= heldout
    assert not names_in("train") & heldout and not names_in("validation") & heldout
    # a user turn that carries a story is "question\n\nstory"; follow-up turns are bare questions
    stories = lambda s: {m["content"].split("\n\n", 1)[1] for r in load_split(s)  # noqa: E731
                         for m in r["messages"] if m["role"] == "user" and "\n\n" in m["content"]}
    assert not stories("test") & stories("train")
    docs = make_data.pretraining_documents(2000, seen, make_data.SEED, 0.7)
    assert not {n for d in docs for n in name_re.findall(d)} & heldout


def test_task_types_shapes_system_prompts_and_multi_turn():
    train = load_split("train")
    assert len(set(train["task"])) >= 6
    msgs = train["messages"]
    assert any(m[0]["role"] == "system" for m in msgs)
    assert any(sum(t["role"] == "assistant" for t in m) > 1 for m in msgs)
    for shape in ("alpaca", "sharegpt", "messages"):
        assert validate_file(make_data.DATA_DIR / f"train.{shape}.jsonl") == shape
    dirty = list(iter_jsonl(make_data.DATA_DIR / "dirty.jsonl"))
    defects = {r["defect"] for r in dirty}
    assert {"empty_content", "non_string_content", "wrong_role_order", "too_long",
            "duplicate", None} <= defects


def test_train_mix_doubles_count_and_found_and_evaluation_splits_stay_uniform():
    """First-turn tasks follow TRAIN_TASK_WEIGHTS in train only; validation and test draw uniformly
    (so a weights change leaves them byte-identical and their scores comparable)."""
    seen, heldout = make_data.name_pools()
    weights = make_data.TRAIN_TASK_WEIGHTS
    assert weights["count"] == weights["found"] == 2 * weights["place"]
    train = make_data.build_split("train", make_data.SIZES["train"], seen, make_data.SEED, weights)
    first = [c["turn_tasks"][0] for c in train]
    share = {t: first.count(t) / len(first) for t in weights}
    total = sum(weights.values())
    for task, w in weights.items():  # 12,000 draws: binomial sd < 0.35 points
        assert share[task] == pytest.approx(w / total, abs=0.01), task
    uniform = make_data.build_split("test", 1000, heldout, make_data.SEED)
    weighted = make_data.build_split("test", 1000, heldout, make_data.SEED, weights)
    assert uniform == list(iter_jsonl(make_data.DATA_DIR / "test.jsonl"))
    assert [c["turn_tasks"] for c in uniform] != [c["turn_tasks"] for c in weighted]


# --- clear errors -----------------------------------------------------------------------------
def test_malformed_jsonl_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n{"messages": [}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: invalid JSON"):
        list(iter_jsonl(bad))
    bad.write_text('{"instruction": "q", "input": ""}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: missing field 'output'"):
        validate_file(bad)
    bad.write_text('{"conversations": [{"from": "human"}]}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: .*turn 0 is missing field 'value'"):
        validate_file(bad)


def test_unknown_model_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COURSE_MODEL", "no-such-org/no-such-model")
    with pytest.raises(ModelNotAvailableError, match="unset COURSE_MODEL"):
        load_tokenizer()
    with pytest.raises(ModelNotAvailableError, match="huggingface-cli download"):
        load_base_model()


def test_failed_regeneration_leaves_old_files_untouched(tmp_path, monkeypatch):
    make_data.write_all(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    calls = {"n": 0}
    real = make_data.dump_jsonl

    def flaky(records, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real(records, path)

    monkeypatch.setattr(make_data, "dump_jsonl", flaky)
    monkeypatch.setattr(make_data, "SIZES", {"train": 30, "validation": 5, "test": 5})
    with pytest.raises(OSError, match="disk full"):
        make_data.write_all(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_pretraining_is_deterministic_from_its_seed(tmp_path):
    from course.build.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(steps=4, n_docs=300, batch_size=4, context=32, hidden=32,
                         intermediate=64, heads=2, kv_heads=1, layers=1)
    a = pretrain(cfg, tmp_path / "a", "cpu")
    b = pretrain(cfg, tmp_path / "b", "cpu")
    assert a["final_train_loss"] == b["final_train_loss"]
    sa = load_file(tmp_path / "a" / "model.safetensors")
    sb = load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_reading_probe_covers_every_story_task_on_held_out_names(model, tok):
    """course.build.probe_reading: deterministic plain-text probes on held-out names, every task
    that reads a story; before SFT the embedded model answers name questions in plain text but
    not "what was found" (docs/BASE_MODEL.md)."""
    from course.build.probe_reading import probe_reading, reading_probes
    from course.build.tasks import NO_STORY_TASKS, TASKS
    probes = reading_probes(45)
    assert probes == reading_probes(45)
    assert {t for t, _, _ in probes} == set(TASKS) - NO_STORY_TASKS
    heldout = make_data.name_pools()[1]
    assert all(any(n in p for n in heldout) for _, p, _ in probes[:5])
    assert all(p.endswith("\nAnswer:") and a.startswith(" ") for _, p, a in probes)
    scores = probe_reading(model, tok, n=45)
    assert scores["main_character"] >= 0.6 and scores["found"] <= 0.4


def test_story_probe_measures_writing_across_tokenizers(model, tok):
    """Bits per character of plain held-out stories (fluent: well under 1 bit; a model that had
    not learnt the stories would need several) and the pronoun probe (a share, deterministic)."""
    from course.build.probe_reading import pronoun_agreement, story_bits_per_char
    bpc = story_bits_per_char(model, tok, n=20)
    assert 0.1 < bpc < 1.0, bpc
    share = pronoun_agreement(model, tok, n=10)
    assert 0.0 <= share <= 1.0 and share == pronoun_agreement(model, tok, n=10)
