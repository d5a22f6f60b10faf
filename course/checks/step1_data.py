"""Visible checks for step 1 (data and chat formats), with a diagnosis for each classic mistake.

    from course.checks import step1_data as checks
    checks.check_format_conversation(ex, tokenizer)      # ex = the learner's data_exercise module
"""
from __future__ import annotations

import json
import re
from collections import Counter
from types import ModuleType
from typing import Sequence

from course.data import to_messages
from course.grading import call, fail, passed, short
from course.notebook import is_grading
from course.sandbox.by_hand import forbidding

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
TOO_LONG, DUPLICATE = "too_long", "duplicate"

ALPACA_WITH_INPUT = {"instruction": "Who found the kite?",
                     "input": "Tom and Mira went to the park. Mira found a red kite.",
                     "output": "Mira found it."}
ALPACA_NO_INPUT = {"instruction": "Write the first sentence of a story about a boy named Tom.",
                   "input": "", "output": "Once upon a time, there was a little boy named Tom."}


# --- library way ---------------------------------------------------------------------------------
def library_ids(tokenizer, messages: list[dict], add_generation_prompt: bool = False
                ) -> list[int]:
    """`apply_chat_template(..., tokenize=True)` as a plain list of ids."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False,
                                        add_generation_prompt=add_generation_prompt)
    if hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def library_encode(tokenizer, conversations: Sequence[list[dict]]
                   ) -> tuple[list[str], list[list[int]]]:
    """Texts from `apply_chat_template` for many conversations, and their ids (tokenized as one
    batch, which is what `apply_chat_template(tokenize=True)` does one at a time)."""
    texts = [tokenizer.apply_chat_template(m, tokenize=False) for m in conversations]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return texts, [list(i) for i in ids]


# --- alpaca_prompt -------------------------------------------------------------------------------
def check_alpaca_prompt(ex: ModuleType) -> None:
    got = call(ex.alpaca_prompt, dict(ALPACA_WITH_INPUT), what="alpaca_prompt(record with input)")
    if not isinstance(got, str):
        fail("alpaca_prompt returns a str", got=type(got).__name__, expected="str")
    if ALPACA_WITH_INPUT["input"] not in got or "### Input:" not in got:
        fail("record with input: the input appears under '### Input:'",
             mistake="Alpaca input lost: the story never reaches the model, so it cannot "
                     "answer a question about it", got=got)
    if ALPACA_WITH_INPUT["output"] in got:
        fail("the output is not part of the prompt",
             mistake="response leaked into the prompt: the output is what the model must write")
    if not got.endswith("### Response:\n"):
        fail("the prompt ends with '### Response:\\n'",
             mistake="the answer must start on a new line right after '### Response:'",
             got=got[-40:], expected="...### Response:\n")
    expected = ex.ALPACA_PROMPT_WITH_INPUT.format(**ALPACA_WITH_INPUT)
    if got != expected:
        fail("record with input: ALPACA_PROMPT_WITH_INPUT filled in exactly", got=got,
             expected=expected)
    passed("record with input: instruction and input in ALPACA_PROMPT_WITH_INPUT, no output")

    for record, label in ((dict(ALPACA_NO_INPUT), "an empty input"),
                          ({k: v for k, v in ALPACA_NO_INPUT.items() if k != "input"},
                           "no 'input' key")):
        got = call(ex.alpaca_prompt, record, what=f"alpaca_prompt(record with {label})")
        if isinstance(got, str) and "### Input:" in got:
            fail(f"record with {label}: no '### Input:' section",
                 mistake="the with-input template used for an empty input: the prompt shows an "
                         "empty section the data never had")
        expected = ex.ALPACA_PROMPT_NO_INPUT.format(instruction=record["instruction"])
        if got != expected:
            fail(f"record with {label}: ALPACA_PROMPT_NO_INPUT filled in exactly", got=got,
                 expected=expected)
    passed("record with an empty or missing input: ALPACA_PROMPT_NO_INPUT")


# --- normalize_record ----------------------------------------------------------------------------
def _first(records: Sequence[dict], pred) -> dict:
    return next(r for r in records if pred(r))


def normalize_cases(raw: dict[str, Sequence[dict]]) -> list[tuple[str, dict, str | None]]:
    """(label, record, system_prompt) cases drawn from the three raw training files."""
    alpaca, sharegpt, messages = raw["alpaca"], raw["sharegpt"], raw["messages"]
    return [
        ("Alpaca record with input", _first(alpaca, lambda r: r["input"]), None),
        ("Alpaca record with an empty input", _first(alpaca, lambda r: not r["input"]), None),
        ("ShareGPT record with a system turn",
         _first(sharegpt, lambda r: r["conversations"][0]["from"] == "system"), None),
        ("ShareGPT record with two exchanges",
         _first(sharegpt, lambda r: len(r["conversations"]) == 4), None),
        ("messages record with a system turn",
         _first(messages, lambda r: r["messages"][0]["role"] == "system"), None),
        ("messages record with two exchanges",
         _first(messages, lambda r: len(r["messages"]) == 4), None),
        ("Alpaca record + system_prompt argument", _first(alpaca, lambda r: r["input"]),
         "Be brief."),
        ("messages record with its own system turn + system_prompt argument",
         _first(messages, lambda r: r["messages"][0]["role"] == "system"), "Be brief."),
    ]


def _diagnose_normalize(got, expected: list[dict], record: dict, label: str) -> None:
    what = f"{label}: same turns as course.data.to_messages"
    if not isinstance(got, list) or not all(isinstance(t, dict) for t in got):
        fail(f"{label}: returns a list of dicts", got=got, expected=expected)
    keys = {k for t in got for k in t}
    if keys != {"role", "content"}:
        mistake = ("ShareGPT fields copied as they are: rename from/value to role/content"
                   if keys & {"from", "value"} else
                   "every turn must be exactly {'role': ..., 'content': ...}")
        fail(f"{label}: turns have exactly the keys 'role' and 'content'", mistake=mistake,
             got=sorted(keys))
    roles = [t["role"] for t in got]
    if set(roles) - {"system", "user", "assistant"}:
        fail(f"{label}: roles are system / user / assistant",
             mistake="ShareGPT 'from' values not mapped (system/human/gpt -> "
                     "system/user/assistant)", got=roles)
    want_roles = [t["role"] for t in expected]
    if "system" in want_roles and "system" not in roles:
        fail(what, mistake="dropped system prompt: the conversation's system turn (or the "
                           "system_prompt argument) is missing", got=roles, expected=want_roles)
    if roles.count("system") > want_roles.count("system"):
        fail(what, mistake="system prompt added although the record has its own system turn",
             got=roles, expected=want_roles)
    if "instruction" in record and record.get("input"):
        user = next((t["content"] for t in got if t["role"] == "user"), "")
        if not isinstance(user, str) or record["input"] not in user:
            fail(what, mistake="Alpaca input lost: the story (the record's input) must follow "
                               "the instruction in the user turn", got=user,
                 expected=expected[-2]["content"])
        if user != expected[-2]["content"]:
            fail(what, mistake="instruction and input must be joined by one blank line ('\\n\\n')",
                 got=user, expected=expected[-2]["content"])
    if roles != want_roles:
        fail(what, mistake="wrong role order: the turns must keep the record's order",
             got=roles, expected=want_roles)
    if got != expected:
        fail(what, got=got, expected=expected)


def check_normalize_record(ex: ModuleType, raw: dict[str, Sequence[dict]]) -> None:
    """`raw`: {"alpaca": records, "sharegpt": records, "messages": records} (plain dicts)."""
    for label, record, system_prompt in normalize_cases(raw):
        before = json.dumps(record, sort_keys=True)
        got = call(ex.normalize_record, record, system_prompt=system_prompt,
                   what=f"normalize_record({label})")
        expected = to_messages(json.loads(before), system_prompt=system_prompt)
        _diagnose_normalize(got, expected, record, label)
        if json.dumps(record, sort_keys=True) != before:
            fail(f"{label}: the record is left unchanged",
                 mistake="normalize_record changed its input: build new dicts and a new list")
        passed(label)


# --- format_conversation -------------------------------------------------------------------------
FORMAT_CASES = [
    ("one exchange", [{"role": "user", "content": "Who found the kite?"},
                      {"role": "assistant", "content": "Mira found it."}], False),
    ("system prompt and two exchanges",
     [{"role": "system", "content": "Answer in one short sentence."},
      {"role": "user", "content": "Who is the story about?\n\nTom went to the park."},
      {"role": "assistant", "content": "The story is about Tom."},
      {"role": "user", "content": "Where did he go?"},
      {"role": "assistant", "content": "He went to the park."}], False),
    ("content with spaces and newlines around it",
     [{"role": "user", "content": "  two\nlines \n"}, {"role": "assistant", "content": " ok "}],
     False),
    ("add_generation_prompt=True",
     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}], True),
]


def diagnose_format(got, messages: list[dict], tokenizer, add_generation_prompt: bool,
                    label: str) -> None:
    """Fail with the classic mistake that `got` shows, or pass silently if it is right."""
    expected = tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    what = f"{label}: text equals apply_chat_template"
    if not isinstance(got, dict) or not {"text", "input_ids"} <= set(got):
        fail(f"{label}: returns a dict with 'text' and 'input_ids'", got=got)
    text, ids = got["text"], got["input_ids"]
    if not isinstance(text, str):
        fail(f"{label}: 'text' is a str", got=type(text).__name__, expected="str")
    if text.count(IM_END) < len(messages):
        fail(what, mistake="missing end token: every turn must close with <|im_end|>; without "
                           "it the model never learns where an answer stops", got=text,
             expected=expected)
    opened = text.endswith(f"{IM_START}assistant\n")
    if add_generation_prompt and not opened:
        fail(what, mistake="add_generation_prompt=True must end the text with an open "
                           "assistant turn '<|im_start|>assistant\\n'", got=text, expected=expected)
    if not add_generation_prompt and opened:
        fail(what, mistake="generation prompt added although add_generation_prompt=False",
             got=text, expected=expected)
    prompt = f"{IM_START}assistant\n"
    if add_generation_prompt and text.endswith(prompt * 2) and not expected.endswith(prompt * 2):
        fail(what, mistake="generation prompt added twice: '<|im_start|>assistant\\n' opens the "
                           "answer once, at the very end", got=text, expected=expected)
    if text.count(IM_START) != expected.count(IM_START):
        fail(what, mistake="every turn must open with <|im_start|> (and only then)", got=text,
             expected=expected)
    for m in messages:
        if f"{IM_START}{m['role']}" not in text:
            mistake = ("dropped system prompt" if m["role"] == "system" else
                       f"the {m['role']} turn is missing")
            fail(what, mistake=mistake, got=text, expected=expected)
        if f"{IM_START}{m['role']}\n" not in text:
            fail(what, mistake="wrong separator: the role must be followed by one newline",
                 got=text, expected=expected)
        if m["content"] not in text:
            mistake = ("content changed: keep it exactly, do not strip it"
                       if m["content"].strip() in text else "a turn's content is missing")
            fail(what, mistake=mistake, got=text, expected=expected)
    if text.count(f"{IM_END}\n") < len(messages):
        fail(what, mistake="wrong separator: each <|im_end|> must be followed by a newline",
             got=text, expected=expected)
    roles = re.findall(r"<\|im_start\|>(\w+)\n", text)
    want = re.findall(r"<\|im_start\|>(\w+)\n", expected)
    if roles != want:
        fail(what, mistake="wrong role order: the turns must come in the conversation's order",
             got=roles, expected=want)
    if text != expected:
        fail(what, got=text, expected=expected)
    own = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        fail(f"{label}: 'input_ids' is a list of ints", got=short(ids))
    if ids != own:
        mistake = ("special tokens (BOS/EOS) were added: tokenize with add_special_tokens=False"
                   if ids == tokenizer(text)["input_ids"] else
                   "input_ids are not the tokenizer's ids for your text")
        fail(f"{label}: input_ids are the ids of the text", mistake=mistake, got=ids, expected=own)
    lib = library_ids(tokenizer, messages, add_generation_prompt)
    if ids != lib:
        fail(f"{label}: input_ids equal apply_chat_template(tokenize=True)", got=ids, expected=lib)


def check_format_conversation(ex: ModuleType, tokenizer) -> None:
    for label, messages, gen in FORMAT_CASES:
        with forbidding("step1_data"):   # by hand: the library's template raises in here
            got = call(ex.format_conversation, messages, tokenizer, add_generation_prompt=gen,
                       what=f"format_conversation({label})")
        diagnose_format(got, messages, tokenizer, gen, label)
        passed(f"{label}: text and ids equal apply_chat_template")
    end = tokenizer.convert_tokens_to_ids(IM_END)
    messages = FORMAT_CASES[1][1]
    ids = ex.format_conversation(messages, tokenizer)["input_ids"]
    if ids.count(end) != len(messages):
        fail("each <|im_end|> is one token id", got=ids.count(end), expected=len(messages))
    passed(f"each <|im_end|> is the single id {end}, not pieces of text")


def check_format_all(ex: ModuleType, tokenizer, conversations: Sequence[list[dict]],
                     texts: Sequence[str], ids: Sequence[list[int]]) -> None:
    """Every conversation against the library way (`texts`, `ids` from `library_encode`).
    While nbgrader grades, every 10th conversation (the full check runs in your notebook)."""
    step = 10 if is_grading() else 1
    count = 0
    for i in range(0, len(conversations), step):
        got = call(ex.format_conversation, conversations[i], tokenizer,
                   what=f"format_conversation(conversation {i})")
        same = isinstance(got, dict) and got.get("text") == texts[i]
        if not same or got.get("input_ids") != ids[i]:
            diagnose_format(got, conversations[i], tokenizer, False, f"conversation {i}")
            fail(f"conversation {i}: equal to apply_chat_template", got=got, expected=texts[i])
        count += 1
    note = f" (every {step}th, while grading)" if step > 1 else ""
    passed(f"text and ids equal apply_chat_template on {count:,} conversations{note}")


# --- validate_conversation -----------------------------------------------------------------------
MISTAKES = {  # what a defect that slips through looks like, by dirty.jsonl's answer key
    "non_string_content": "non-string content accepted: None, numbers or lists cannot be "
                          "tokenized",
    "empty_content": "empty or whitespace-only content accepted: use content.strip()",
    "wrong_role_order": "wrong role order accepted",
    DUPLICATE: "duplicates not removed (or not all of them)",
    TOO_LONG: "over-long samples not dropped: count format_conversation(...)['input_ids'] "
              "against max_tokens",
}
def _conv(*turns) -> list[dict]:
    return [{"role": r, "content": c} for r, c in turns]


OK_TURNS = _conv(("user", "Who?"), ("assistant", "Tom."))
VALIDATE_CASES = [
    ("a valid exchange", OK_TURNS, [], "a valid conversation was flagged"),
    ("system + two exchanges", _conv(("system", "Be brief."), ("user", "Who?"),
                                     ("assistant", "Tom."), ("user", "Where?"),
                                     ("assistant", "Home.")), [],
     "a valid conversation was flagged (a system turn may come first)"),
    ("content None", _conv(("user", "Who?"), ("assistant", None)), ["non_string_content"],
     "non-string content accepted: None cannot be tokenized"),
    ("content 42", _conv(("user", 42), ("assistant", "Tom.")), ["non_string_content"],
     "non-string content accepted"),
    ("content a list", _conv(("user", "Who?"), ("assistant", ["a", "list"])),
     ["non_string_content"], "non-string content accepted"),
    ("content ''", _conv(("user", "Who?"), ("assistant", "")), ["empty_content"],
     "empty content accepted: an empty answer teaches the model to stop at once"),
    ("content '   '", _conv(("user", "   "), ("assistant", "Tom.")), ["empty_content"],
     "whitespace-only content accepted: use content.strip()"),
    ("content '\\n'", _conv(("user", "Who?"), ("assistant", "\n")), ["empty_content"],
     "whitespace-only content accepted: use content.strip()"),
    ("assistant first", _conv(("assistant", "Tom."), ("user", "Who?")), ["wrong_role_order"],
     "wrong role order accepted: the conversation must start with the user"),
    ("ends with a user turn", _conv(("user", "Who?"), ("assistant", "Tom."), ("user", "Thanks!")),
     ["wrong_role_order"], "wrong role order accepted: the last turn must be the assistant's"),
    ("two user turns in a row", _conv(("user", "Who?"), ("user", "Tom?"), ("assistant", "Yes.")),
     ["wrong_role_order"], "wrong role order accepted: user and assistant must alternate"),
    ("system turn in the middle", _conv(("user", "Who?"), ("system", "Be brief."),
                                        ("assistant", "Tom.")),
     ["wrong_role_order"], "wrong role order accepted: a system turn may only come first"),
    ("unknown role 'bot'", _conv(("user", "Who?"), ("bot", "Tom.")), ["wrong_role_order"],
     "unknown role accepted"),
    ("no turns at all", [], ["wrong_role_order"], "an empty conversation accepted"),
    ("several problems", _conv(("assistant", " "), ("user", None)),
     ["non_string_content", "empty_content", "wrong_role_order"],
     "each problem once, in the order of PROBLEMS"),
]


def check_validate_conversation(ex: ModuleType, dirty: Sequence[dict]) -> None:
    """`dirty`: the records of dirty.jsonl; their `defect` field is the answer key."""
    for label, messages, expected, mistake in VALIDATE_CASES:
        got = call(ex.validate_conversation, [dict(t) for t in messages],
                   what=f"validate_conversation({label})")
        if got != expected:
            fail(f"{label}: {expected}", mistake=mistake, got=got, expected=expected)
    passed(f"{len(VALIDATE_CASES)} small cases: valid ones pass, each defect is named")
    flagged = Counter()
    for r in dirty:
        got = call(ex.validate_conversation, r["messages"],
                   what=f"validate_conversation({r['id']})")
        defect = r["defect"] if r["defect"] not in (None, DUPLICATE, TOO_LONG) else None
        if defect is None and got:
            fail(f"{r['id']} is valid", mistake="a valid conversation was flagged", got=got,
                 expected=[])
        if defect is not None and defect not in got:
            fail(f"{r['id']} has the defect {defect!r}", mistake=MISTAKES[defect],
                 detail=f"got {got} for messages {short(r['messages'], 300)}")
        flagged.update(got)
    passed(f"dirty.jsonl: {dict(flagged)} found, no valid conversation flagged")


# --- MAX_TOKENS ----------------------------------------------------------------------------------
def check_max_tokens(max_tokens, train_lengths: Sequence[int], too_long_lengths: Sequence[int],
                     context: int) -> None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        fail("MAX_TOKENS is an int (a number of tokens)", got=max_tokens)
    longest = max(train_lengths)
    if max_tokens < longest:
        lost = sum(n > max_tokens for n in train_lengths)
        fail(f"MAX_TOKENS = {max_tokens} keeps every clean training conversation",
             mistake=f"too small: it would drop {lost} good conversations (the longest has "
                     f"{longest} tokens); read the histogram again")
    passed(f"keeps all {len(train_lengths):,} training conversations (longest: {longest} tokens)")
    if max_tokens >= min(too_long_lengths):
        fail(f"MAX_TOKENS = {max_tokens} drops the over-long samples",
             mistake=f"too large: over-long samples (from {min(too_long_lengths)} tokens) "
                     "would be kept")
    if max_tokens > context:
        fail(f"MAX_TOKENS = {max_tokens} fits the model's context of {context} tokens",
             mistake="longer samples cannot be trained on without cutting them")
    passed(f"drops the {len(too_long_lengths)} over-long samples and fits the context ({context})")


# --- clean_conversations -------------------------------------------------------------------------
def check_clean_conversations(ex: ModuleType, tokenizer, dirty: Sequence[dict],
                              max_tokens: int) -> None:
    conversations = [r["messages"] for r in dirty]
    out = call(ex.clean_conversations, conversations, tokenizer, max_tokens,
               what="clean_conversations(dirty.jsonl)")
    if not (isinstance(out, tuple) and len(out) == 2):
        fail("returns a tuple (kept, dropped)", got=out)
    kept, dropped = out
    if not all(isinstance(d, tuple) and len(d) == 2 for d in dropped):
        fail("dropped is a list of (index, reason) pairs", got=dropped[:3])
    if [i for i, _ in dropped] != sorted(i for i, _ in dropped):
        fail("dropped is in the order of the input", got=[i for i, _ in dropped])
    got = Counter(reason for _, reason in dropped)
    want = Counter(r["defect"] for r in dirty if r["defect"])
    for reason in want:
        if got[reason] < want[reason]:
            fail(f"dirty.jsonl: {want[reason]} dropped as {reason!r}", mistake=MISTAKES[reason],
                 got=dict(got), expected=dict(want))
    if got != want:
        fail("dirty.jsonl: exactly the defective samples are dropped",
             mistake="good samples dropped, or reasons checked in the wrong order "
                     "(problems, then duplicate, then too_long)", got=dict(got),
             expected=dict(want))
    key = lambda m: json.dumps(m, sort_keys=True)  # noqa: E731
    if sorted(map(key, kept)) != sorted(key(r["messages"]) for r in dirty if not r["defect"]):
        fail("dirty.jsonl: the kept samples are exactly the good ones")
    ids = {id(c) for c in conversations}
    if not all(id(k) in ids for k in kept):
        fail("kept holds the input conversations themselves (not copies)")
    passed(f"dirty.jsonl: kept {len(kept)} of {len(dirty)}; dropped {dict(got)}")

    n = len(call(ex.format_conversation, OK_TURNS, tokenizer,
                 what="format_conversation")["input_ids"])  # counted the way clean counts
    for limit, expect_kept in ((n, 1), (n - 1, 0)):
        k, d = call(ex.clean_conversations, [OK_TURNS], tokenizer, limit,
                    what=f"clean_conversations(max_tokens={limit})")
        if len(k) != expect_kept:
            fail(f"a {n}-token conversation with max_tokens={limit} is "
                 f"{'kept' if expect_kept else 'dropped'}",
                 mistake="off by one: drop only conversations with MORE than max_tokens tokens",
                 got=d)
    passed(f"a {n}-token conversation is kept at max_tokens={n}, dropped at {n - 1}")
