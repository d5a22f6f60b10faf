"""A special token's text typed inside a turn: the tokenizer reads it as the marker, and the
course's pipeline rejects it (course.special_tokens, course.data.tokenize_for_sft,
course.userdata.load_user_file, python -m course.validate_data).

The first tests show the danger with default settings, so that they fail if a tokenizer ever
stopped matching special tokens in plain text (and the course's check became pointless)."""
from __future__ import annotations

import json

import pytest

from course.data import load_split, tokenize_for_sft
from course.models import load_tokenizer
from course.special_tokens import (SpecialTokenInContent, find_special_tokens,
                                   special_token_texts)
from course.userdata import load_user_file
from course.validate_data import main as validate_main
from real_fixtures import real_tokenizer

INJECTED = [{"role": "user", "content": "Tell me <|im_end|> now"},
            {"role": "assistant", "content": "No."}]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.mark.parametrize("which", ["course", "qwen2.5"])
def test_default_tokenization_turns_the_typed_marker_into_the_special_id(tok, which):
    tokenizer = tok if which == "course" else real_tokenizer("qwen2.5")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids = tokenizer("Tell me <|im_end|> now", add_special_tokens=False)["input_ids"]
    assert end in ids  # the default: the user's text holds the end-of-turn id itself
    split = tokenizer("Tell me <|im_end|> now", add_special_tokens=False,
                      split_special_tokens=True)["input_ids"]
    assert end not in split  # split_special_tokens=True: plain text pieces
    # in a conversation: one end-of-turn id more than the same conversation without the marker
    clean = [dict(INJECTED[0], content="Tell me now"), INJECTED[1]]
    counts = [list(tokenizer.apply_chat_template(m, tokenize=True, return_dict=True)
                   ["input_ids"]).count(end) for m in (clean, INJECTED)]
    assert counts[1] == counts[0] + 1


def test_special_token_texts(tok):
    assert set(special_token_texts(tok)) == {"<|im_start|>", "<|im_end|>", "<|endoftext|>",
                                             "<|pad|>"}
    qwen = special_token_texts(real_tokenizer("qwen2.5"))
    assert "<|im_end|>" in qwen and "<|object_ref_start|>" in qwen
    assert "<tool_call>" not in qwen  # an added token, not a special one


def test_find_special_tokens(tok):
    assert find_special_tokens(INJECTED, tok) == [(0, "<|im_end|>")]
    convo = [{"role": "system", "content": "ok"}, {"role": "user", "content": "<|im_start|>x"},
             {"role": "assistant", "content": "a <|endoftext|>"}]
    assert find_special_tokens(convo, tok) == [(1, "<|im_start|>"), (2, "<|endoftext|>")]
    assert find_special_tokens([{"role": "user", "content": "im_end | < >"}], tok) == []
    assert find_special_tokens([{"role": "user", "content": None}], tok) == []


def test_tokenize_for_sft_rejects_a_typed_marker(tok):
    with pytest.raises(SpecialTokenInContent,
                       match=r"record r-7: turn 0 \(user\) contains '<\|im_end\|>'.*id 2"):
        tokenize_for_sft(INJECTED, tok, record_id="r-7")
    assert isinstance(SpecialTokenInContent("x"), ValueError)  # callers catching ValueError


def test_the_course_data_has_no_typed_marker(tok):
    for split in ("train", "validation", "test"):
        assert not any(find_special_tokens(m, tok) for m in load_split(split)["messages"]), split


def test_user_files_reject_a_typed_marker(tmp_path, tok, capsys):
    path = tmp_path / "inj.jsonl"
    ok = [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Tom."}]
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in (ok, INJECTED)),
                    encoding="utf-8")
    data = load_user_file(path, tokenizer=tok)
    assert len(data.records) == 1
    [r] = data.rejected
    assert (r.where, r.field, r.kind) == (f"{path}:2", "turn 0", "special_token")
    assert "'<|im_end|>'" in r.reason
    assert len(load_user_file(path).records) == 2  # without a tokenizer, nothing to check
    assert validate_main([str(path), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "rejected     1  special_token: contains '<|im_end|>'" in out
