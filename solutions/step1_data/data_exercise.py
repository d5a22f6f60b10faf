"""Step 1 exercises: raw records -> one `messages` schema -> clean -> ChatML text and token ids.

tutorial.ipynb imports this module and reloads it before every cell (%autoreload), so edit a
function here, save, and re-run the notebook cell that uses it. Each TODO is a function body;
its docstring is the specification that the checks and the grader hold you to.

    messages = normalize_record({"instruction": "Who?", "input": "Tom ran.", "output": "Tom."})
    enc = format_conversation(messages, tokenizer)      # {"text": "<|im_start|>user\\n...", ...}
"""
from __future__ import annotations

# The two Alpaca prompt templates, shown in the notebook (their text: course/templates.py)
from course.templates import ALPACA_PROMPT_NO_INPUT, ALPACA_PROMPT_WITH_INPUT  # noqa: F401

IM_START = "<|im_start|>"  # opens a turn; followed by the role and a newline
IM_END = "<|im_end|>"      # closes a turn; after an assistant turn it is the "stop" signal
SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant"}
PROBLEMS = ("non_string_content", "empty_content", "wrong_role_order")


def alpaca_prompt(record: dict) -> str:
    """The Alpaca prompt for an `{instruction, input, output}` record, ending in "### Response:\\n".

    Fill ALPACA_PROMPT_WITH_INPUT when `input` is a non-empty string, otherwise (empty or missing
    `input`) ALPACA_PROMPT_NO_INPUT. The `output` is not part of the prompt: it is what the model
    should write next.

    >>> alpaca_prompt({"instruction": "Say hi.", "input": "", "output": "Hi."}).endswith(
    ...     "### Instruction:\\nSay hi.\\n\\n### Response:\\n")
    True
    """
    # TODO: choose the template by whether record["input"] is non-empty, then .format() it.
    ### BEGIN SOLUTION
    if record.get("input"):
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=record["instruction"],
                                               input=record["input"])
    return ALPACA_PROMPT_NO_INPUT.format(instruction=record["instruction"])
    ### END SOLUTION


def normalize_record(record: dict, system_prompt: str | None = None) -> list[dict]:
    """One raw record of any of the three shapes -> `[{"role": ..., "content": ...}, ...]`.

    The shape is told by its key, checked in this order:
    - "messages" `{messages: [{role, content}]}`: copy each turn's role and content (only those).
    - "conversations" (ShareGPT) `{conversations: [{from, value}]}`: role = SHAREGPT_ROLES[from]
      (system / human / gpt -> system / user / assistant), content = value.
    - "instruction" (Alpaca) `{instruction, input, output}`: one user turn and one assistant turn
      (the output). The user turn is the instruction, followed by a blank line ("\\n\\n") and the
      input when the input is non-empty.
    A record with none of these keys raises ValueError.

    If `system_prompt` is a non-empty string and the conversation does not already start with a
    system turn, `{"role": "system", "content": system_prompt}` is put first. A record's own
    system turn is kept and never replaced. Returns new dicts: the record itself is left unchanged.

    >>> normalize_record({"instruction": "Who?", "input": "Tom ran.", "output": "Tom."})
    [{'role': 'user', 'content': 'Who?\\n\\nTom ran.'}, {'role': 'assistant', 'content': 'Tom.'}]
    """
    # TODO: build the list of turns for each shape, then prepend the system prompt if needed.
    ### BEGIN SOLUTION
    if "messages" in record:
        messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    elif "conversations" in record:
        messages = [{"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]}
                    for t in record["conversations"]]
    elif "instruction" in record:
        user = record["instruction"]
        if record.get("input"):
            user = f"{user}\n\n{record['input']}"
        messages = [{"role": "user", "content": user},
                    {"role": "assistant", "content": record["output"]}]
    else:
        raise ValueError(f"unknown record shape with keys {sorted(record)}")
    if system_prompt and not (messages and messages[0]["role"] == "system"):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages
    ### END SOLUTION


def format_conversation(messages: list[dict], tokenizer, add_generation_prompt: bool = False
                        ) -> dict:
    """ChatML by hand: the exact text the model reads, and its token ids.

    Every turn becomes `<|im_start|>{role}\\n{content}<|im_end|>\\n`, in order, with nothing
    added or removed (content is not stripped). With `add_generation_prompt=True` the text ends
    with `<|im_start|>assistant\\n`: an open assistant turn, the prompt for the model's answer.

    Returns `{"text": str, "input_ids": list[int]}`, where input_ids are the tokenizer's ids for
    `text` with nothing added (no BOS): each special token such as `<|im_end|>` is one id.
    Must equal `tokenizer.apply_chat_template(messages, tokenize=False / True,
    add_generation_prompt=...)` for the course's tokenizer.

    >>> format_conversation([{"role": "user", "content": "Hi"}], tokenizer)["text"]
    '<|im_start|>user\\nHi<|im_end|>\\n'
    """
    # TODO: one "<|im_start|>{role}\n{content}<|im_end|>\n" per turn; then tokenize the text.
    ### BEGIN SOLUTION
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    if add_generation_prompt:
        text += f"{IM_START}assistant\n"
    input_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return {"text": text, "input_ids": list(input_ids)}
    ### END SOLUTION


def validate_conversation(messages: list[dict]) -> list[str]:
    """The problems that make a conversation unfit for SFT; `[]` when there are none.

    Returns codes from PROBLEMS, each at most once, in the order of PROBLEMS:
    - "non_string_content": some turn's content is not a str (None, 42, a list, ...);
    - "empty_content": some turn's content is a str with nothing but whitespace ("", "  ", "\\n");
    - "wrong_role_order": the roles are not: an optional "system" turn first, then "user" and
      "assistant" alternating, starting with "user" and ending with "assistant". So an empty
      conversation, a system turn anywhere but first, an unknown role, two users in a row or a
      conversation ending on a user turn are all "wrong_role_order".
    Every turn is a dict with "role" and "content" keys (the content may have any type).

    >>> validate_conversation([{"role": "assistant", "content": " "}])
    ['empty_content', 'wrong_role_order']
    """
    # TODO: check the content types, then empty contents, then the role sequence.
    ### BEGIN SOLUTION
    problems = []
    contents = [m["content"] for m in messages]
    if any(not isinstance(c, str) for c in contents):
        problems.append("non_string_content")
    if any(isinstance(c, str) and not c.strip() for c in contents):
        problems.append("empty_content")
    roles = [m["role"] for m in messages]
    if roles and roles[0] == "system":
        roles = roles[1:]
    expected = ["user", "assistant"] * (len(roles) // 2)
    if not roles or len(roles) % 2 or roles != expected:
        problems.append("wrong_role_order")
    return problems
    ### END SOLUTION


def clean_conversations(conversations: list[list[dict]], tokenizer, max_tokens: int
                        ) -> tuple[list[list[dict]], list[tuple[int, str]]]:
    """Drop the conversations that are unfit for SFT, and say which and why.

    Goes through `conversations` in order. The first rule that applies drops a conversation:
    1. validate_conversation() reports a problem: the reason is its first problem code;
    2. "duplicate": the same turns (same roles and contents, in the same order) as a conversation
       that was kept earlier;
    3. "too_long": format_conversation() gives more than `max_tokens` token ids.
    A conversation that no rule drops is kept.

    Returns `(kept, dropped)`: `kept` holds the kept conversations (the same objects, in their
    original order); `dropped` is `[(index, reason), ...]` in order, index into `conversations`.

    >>> from course.models import load_tokenizer
    >>> ok = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    >>> empty = [{"role": "user", "content": ""}]
    >>> kept, dropped = clean_conversations([ok, ok, empty], load_tokenizer(), 512)
    >>> dropped
    [(1, 'duplicate'), (2, 'empty_content')]
    """
    # TODO: apply the three rules in order; remember what was kept to spot duplicates.
    ### BEGIN SOLUTION
    kept, dropped, seen = [], [], set()
    for index, messages in enumerate(conversations):
        problems = validate_conversation(messages)
        key = tuple((m["role"], m["content"]) for m in messages) if not problems else None
        if problems:
            dropped.append((index, problems[0]))
        elif key in seen:
            dropped.append((index, "duplicate"))
        elif len(format_conversation(messages, tokenizer)["input_ids"]) > max_tokens:
            dropped.append((index, "too_long"))
        else:
            seen.add(key)
            kept.append(messages)
    return kept, dropped
    ### END SOLUTION
