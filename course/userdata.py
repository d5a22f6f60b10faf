"""Your own data file -> conversations the course can train on, every record accounted for.

    data = load_user_file("my_data.json")      # a JSON array or JSON lines, any of three formats
    print(data.summary())                      # accepted / rejected with reasons, unused fields
    train = data.dataset()                     # datasets.Dataset of {id, messages}

Formats, told per file from the first record (or given by a mapping):
    alpaca     {instruction, input?, output, system?, history?}       history: [[user, answer], ...]
    sharegpt   {conversations: [{from, value}], system?, tools?}     from: system | human | gpt
    messages   {messages: [{role, content}]}                         role: system | user | assistant

`mapping` takes an entry of LLaMA-Factory's `dataset_info.json` (`{"formatting": "sharegpt",
"columns": {"messages": "conversations", "system": "sys"}, "tags": {"role_tag": "from", ...}}`)
for files whose columns have other names.

Every record becomes a conversation or a `Rejection` naming the file, the line (JSON lines) or
the array index (a JSON array), the field and the reason: nothing is dropped silently. Fields the
course does not read are counted once per file (`unused_fields`).

LLaMA-Factory's newer format (its `v1_sft_demo.jsonl`) is read as `messages`: a content given
as a list of text parts (`[{"type": "text", "value": ...}]`, or OpenAI's `"text"` key) is joined
in order, and a turn's `loss_weight` becomes the mask: 0 on an assistant turn keeps it in the
context but out of the loss (`{"role": "assistant", "content": ..., "train": False}`, honoured by
`course.data.tokenize_for_sft`); 1 on an assistant turn and 0 on other turns are the course's
default. Any other weight (0.5, or 1 on a user turn) is rejected with its field.

Tool calls are rejected at load time. ShareGPT `function_call` / `observation` turns, a non-empty
`tools` column, OpenAI `tool_calls` and `tool` turns: each model family renders tools its own way
(Qwen2.5 writes `<tool_call>` blocks, Llama 3.2 a JSON line, Mistral `[TOOL_CALLS]`), while the
course's formatting and labels are built for system, user and assistant turns of text. Records
with images, videos or audio (a column, or a content part of that type) are rejected for the
same reason: the course trains text-only chat models.

The file is parsed with the standard library rather than `datasets.load_dataset("json")`: Arrow
unifies the schema of all records, which turns a missing field into null and fails the whole
file on one record of another type, and it forgets line numbers. The accepted conversations,
which all have one schema, become a `datasets.Dataset` (`UserData.dataset()`).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from course.data import DataFormatError

FORMATS = ("alpaca", "sharegpt", "messages")
ROLES = ("system", "user", "assistant")
TOOLS_REJECTED = ("tool calls are not supported: the course trains system, user and assistant "
                  "turns of text (remove tool records, or train them with a library that "
                  "renders your model's tool format)")
MEDIA_REJECTED = "images, videos and audio are not supported: the course trains text-only models"


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds what, LLaMA-Factory style (`dataset_info.json` entries)."""

    formatting: str                     # "alpaca" or "sharegpt" (OpenAI messages are sharegpt)
    columns: dict[str, str]             # course name -> column name in the file
    tags: dict[str, str] = field(default_factory=dict)  # sharegpt only: role / content names
    name: str = ""                      # the format as reported: alpaca | sharegpt | messages

    @classmethod
    def from_dataset_info(cls, entry: dict[str, Any]) -> "ColumnMapping":
        """A mapping from one entry of LLaMA-Factory's `dataset_info.json`; columns and tags it
        does not give keep their defaults (`file_name` and other keys are ignored)."""
        formatting = entry.get("formatting", "alpaca")
        if formatting not in ("alpaca", "sharegpt"):
            raise DataFormatError(f"mapping: formatting {formatting!r} is not supported; "
                                  "expected 'alpaca' or 'sharegpt'")
        base = PRESETS["alpaca" if formatting == "alpaca" else "sharegpt"]
        columns = {**base.columns, **entry.get("columns", {})}
        tags = {**base.tags, **entry.get("tags", {})}
        name = formatting
        if formatting == "sharegpt" and tags.get("role_tag") == "role":
            name = "messages"
        return cls(formatting, columns, tags, name)


_SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                  "assistant_tag": "gpt", "system_tag": "system",
                  "observation_tag": "observation", "function_tag": "function_call"}
_MESSAGES_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                  "assistant_tag": "assistant", "system_tag": "system",
                  "observation_tag": "tool", "function_tag": "function"}
_MEDIA = {"images": "images", "videos": "videos", "audios": "audios"}
PRESETS = {
    "alpaca": ColumnMapping("alpaca", {"prompt": "instruction", "query": "input",
                                       "response": "output", "history": "history",
                                       "system": "system", **_MEDIA}, {}, "alpaca"),
    "sharegpt": ColumnMapping("sharegpt", {"messages": "conversations", "system": "system",
                                           "tools": "tools", **_MEDIA}, _SHAREGPT_TAGS,
                              "sharegpt"),
    "messages": ColumnMapping("sharegpt", {"messages": "messages", "system": "system",
                                           "tools": "tools", **_MEDIA}, _MESSAGES_TAGS,
                              "messages"),
}


@dataclass(frozen=True)
class Rejection:
    """One record that is not trained on: where it is, which field, why (`kind`: a short code)."""

    where: str
    field: str
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: field {self.field!r}: {self.reason}"


class _Rejected(Exception):
    """Internal: raised while converting one record, turned into a Rejection."""

    def __init__(self, field_name: str, kind: str, reason: str):
        super().__init__(reason)
        self.field, self.kind, self.reason = field_name, kind, reason


@dataclass
class UserData:
    """The outcome of loading one file: accepted conversations, rejections, unused fields."""

    path: Path
    format: str | None
    layout: str                                   # "JSON array" or "JSON lines"
    records: list[dict] = field(default_factory=list)        # {"id": where, "messages": [...]}
    rejected: list[Rejection] = field(default_factory=list)
    unused_fields: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Records in the file (accepted + rejected)."""
        return len(self.records) + len(self.rejected)

    def rejected_by_kind(self) -> dict[str, list[Rejection]]:
        """Rejections grouped by kind, most frequent first."""
        groups: dict[str, list[Rejection]] = {}
        for r in self.rejected:
            groups.setdefault(r.kind, []).append(r)
        return dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))

    def summary(self, examples: int = 2) -> str:
        """A few lines for people: counts, each kind of rejection with examples, unused fields."""
        lines = [f"{self.path}: {self.format or 'unknown format'} ({self.layout}), "
                 f"{self.total} records: {len(self.records)} accepted, "
                 f"{len(self.rejected)} rejected"]
        for kind, group in self.rejected_by_kind().items():
            lines.append(f"  rejected {len(group):>5}  {kind}: {group[0].reason}")
            lines += [f"                  e.g. {r.where} field {r.field!r}"
                      for r in group[:examples]]
        if self.unused_fields:
            unused = ", ".join(f"{k!r} ({n} records)" for k, n in self.unused_fields.items())
            lines.append(f"  not used by the course (ignored): {unused}")
        return "\n".join(lines)

    def dataset(self):
        """The accepted conversations as a `datasets.Dataset` with columns id and messages."""
        import datasets

        return datasets.Dataset.from_list(self.records)


def read_records(path: str | Path) -> tuple[str, Iterator[tuple[str, Any]]]:
    """(layout, iterator of (where, record)) for a JSON array or a JSON lines file.

    The layout is told by the first character, whatever the extension: `[` is a JSON array
    (where = "file[i]"), anything else one JSON value per line (where = "file:line"; blank lines
    skipped). A JSON lines record that is not valid JSON is yielded as a `Rejection`; a JSON
    array that is not valid JSON raises DataFormatError with its line and column (nothing in it
    can be read)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}:{err.lineno}: invalid JSON array ({err.msg} at column "
                                  f"{err.colno})") from None
        return "JSON array", ((f"{path}[{i}]", v) for i, v in enumerate(values))

    def lines() -> Iterator[tuple[str, Any]]:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as err:
                hint = (" (a JSON object spread over several lines? JSON lines needs one record "
                        "per line; a JSON array starts with '[')" if lineno == 1 else "")
                yield where, Rejection(where, "(line)", "invalid_json",
                                       f"invalid JSON ({err.msg} at column {err.colno}){hint}")
    return "JSON lines", lines()


def detect_format(record: dict) -> str | None:
    """'messages', 'sharegpt' or 'alpaca' from a record's fields, or None."""
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record and "output" in record:
        return "alpaca"
    return None


def _text(value: Any, field_name: str, required: bool = True) -> str:
    """A field that must hold text; '' for an optional one that is missing or null."""
    if value is None and not required:
        return ""
    if isinstance(value, str):
        return value
    if value is None:
        raise _Rejected(field_name, "missing_field", "missing or null")
    if isinstance(value, list):
        raise _Rejected(field_name, "content_parts", "a list (of content parts?), not text: the "
                        "course trains on text; join the text parts into one string")
    raise _Rejected(field_name, "wrong_type", f"{type(value).__name__}, expected text")


_MEDIA_PARTS = ("image", "image_url", "input_image", "video", "video_url", "audio",
                "input_audio", "audio_url")


def _content(value: Any, field_name: str) -> str:
    """A turn's content: text, or a list of text parts joined in order (LLaMA-Factory's newer
    format `{"type": "text", "value": ...}`, OpenAI's `{"type": "text", "text": ...}`). A part
    of another type is rejected: media as `media`, anything else as `content_parts`."""
    if not isinstance(value, list):
        return _text(value, field_name)
    if not value:
        raise _Rejected(field_name, "empty_content", "an empty list of content parts")
    texts = []
    for j, part in enumerate(value):
        where = f"{field_name}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _MEDIA_PARTS:
            raise _Rejected(f"{where}.type", "media", MEDIA_REJECTED)
        if kind != "text":
            raise _Rejected(where, "content_parts", f"a part of type {kind!r}; expected "
                            "{'type': 'text', 'value': ...} (or 'text': ...): the course "
                            "trains on text")
        key = "value" if "value" in part else "text"
        texts.append(_text(part.get(key), f"{where}.{key}"))
    return "".join(texts)


def _trained(turn: dict, role: str, where: str) -> bool:
    """Whether a turn is trained, from its optional `loss_weight` (LLaMA-Factory's newer format):
    absent, or 1 on an assistant turn, trains it; 0 masks it. The course trains an answer fully
    or not at all, and never a system or user turn: any other value is rejected."""
    if "loss_weight" not in turn or turn["loss_weight"] is None:
        return role == "assistant"
    weight = turn["loss_weight"]
    field_name = f"{where}.loss_weight"
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight not in (0, 1):
        raise _Rejected(field_name, "loss_weight", f"{weight!r}: the course trains a turn "
                        "fully or not at all, so loss_weight must be 0 or 1")
    if weight == 1 and role != "assistant":
        raise _Rejected(field_name, "loss_weight", f"1 on a {role} turn: the course trains "
                        "what the assistant writes only (use 0, or leave it out)")
    return weight == 1


def _nonempty(value: Any) -> bool:
    return value not in (None, "", "[]", [], {})


def _alpaca(record: dict, m: ColumnMapping) -> list[dict]:
    c = m.columns
    user = _text(record.get(c["prompt"]), c["prompt"])
    query = _text(record.get(c["query"]), c["query"], required=False)
    if query:
        user = f"{user}\n\n{query}"
    answer = _text(record.get(c["response"]), c["response"])
    messages = []
    system = _text(record.get(c["system"]), c["system"], required=False)
    if system:
        messages.append({"role": "system", "content": system})
    history = record.get(c["history"])
    if _nonempty(history):
        if not isinstance(history, list):
            raise _Rejected(c["history"], "wrong_type", "expected a list of [user, answer] pairs")
        for i, pair in enumerate(history):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise _Rejected(f"{c['history']}[{i}]", "wrong_type",
                                "expected a [user, answer] pair")
            messages += [{"role": "user", "content": _text(pair[0], f"{c['history']}[{i}][0]")},
                         {"role": "assistant",
                          "content": _text(pair[1], f"{c['history']}[{i}][1]")}]
    return messages + [{"role": "user", "content": user},
                       {"role": "assistant", "content": answer}]


def _sharegpt(record: dict, m: ColumnMapping, unused: Counter) -> list[dict]:
    c, t = m.columns, m.tags
    col = c["messages"]
    if _nonempty(record.get(c["tools"])):
        raise _Rejected(c["tools"], "tool_calls", TOOLS_REJECTED)
    turns = record.get(col)
    if not isinstance(turns, list) or not turns:
        kind = "missing_field" if col not in record else "wrong_type"
        raise _Rejected(col, kind, "expected a non-empty list of turns")
    roles = {t["user_tag"]: "user", t["assistant_tag"]: "assistant", t["system_tag"]: "system"}
    tool_roles = {t["observation_tag"], t["function_tag"], "tool", "function", "ipython",
                  "function_call", "observation", "tool_call"}
    messages = []
    for i, turn in enumerate(turns):
        where = f"{col}[{i}]"
        if not isinstance(turn, dict):
            raise _Rejected(where, "wrong_type", f"a {type(turn).__name__}, expected an object "
                            f"with {t['role_tag']!r} and {t['content_tag']!r}")
        role = turn.get(t["role_tag"])
        if role in tool_roles or _nonempty(turn.get("tool_calls")):
            raise _Rejected(f"{where}.{t['role_tag']}", "tool_calls", TOOLS_REJECTED)
        if role not in roles:
            raise _Rejected(f"{where}.{t['role_tag']}", "unknown_role",
                            f"role {role!r}; expected one of {sorted(roles)}")
        for key in turn:
            if key not in (t["role_tag"], t["content_tag"], "tool_calls", "loss_weight"):
                unused[f"{col}[].{key}"] += 1
        message = {"role": roles[role],
                   "content": _content(turn.get(t["content_tag"]), f"{where}.{t['content_tag']}")}
        if not _trained(turn, roles[role], where) and roles[role] == "assistant":
            message["train"] = False  # loss_weight 0: in the context, not in the loss
        messages.append(message)
    answers = [m for m in messages if m["role"] == "assistant"]
    if answers and all(m.get("train") is False for m in answers):
        raise _Rejected(f"{col}[].loss_weight", "nothing_trained",
                        "every assistant turn has loss_weight 0: nothing would be trained")
    system = _text(record.get(c["system"]), c["system"], required=False)
    if system:
        if messages[0]["role"] == "system":
            raise _Rejected(c["system"], "ambiguous_system",
                            "a system column and a system turn: keep one")
        messages.insert(0, {"role": "system", "content": system})
    return messages


def check_structure(messages: list[dict]) -> None:
    """Raise `_Rejected` unless: an optional system turn first, then user and assistant turns
    alternating, from a user turn to an assistant turn, none of them empty (the order every
    chat template accepts, and the one step 1's validation asks for)."""
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    offset = len(messages) - len(body)
    for i, turn in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if turn["role"] != expected:
            raise _Rejected(f"turn {i + offset}", "role_order",
                            f"{turn['role']} where {expected} was expected (after an optional "
                            "system turn, user and assistant alternate)")
    if not body or body[-1]["role"] != "assistant":
        raise _Rejected(f"turn {len(messages) - 1}", "no_answer",
                        "the conversation does not end with an assistant turn")
    for i, turn in enumerate(messages):
        if not turn["content"].strip():
            raise _Rejected(f"turn {i}", "empty_content", f"empty {turn['role']} turn")


def check_special_tokens(messages: list[dict], tokenizer) -> None:
    """Raise `_Rejected` when a turn's content holds the text of one of the tokenizer's special
    tokens (`course.special_tokens`): typed by a user, `<|im_end|>` would close the turn."""
    from course.special_tokens import describe, find_special_tokens

    found = find_special_tokens(messages, tokenizer)
    if found:
        turn, token = found[0]
        raise _Rejected(f"turn {turn}", "special_token", describe(token, tokenizer))


def _used_columns(m: ColumnMapping) -> set[str]:
    return set(m.columns.values())


def load_user_file(path: str | Path, mapping: ColumnMapping | dict | None = None,
                   system_prompt: str | None = None, tokenizer=None) -> UserData:
    """Load, validate and normalise one file of your own (see the module docstring).

    `mapping`: a `ColumnMapping`, a LLaMA-Factory `dataset_info.json` entry, or a format name
    ('alpaca', 'sharegpt', 'messages'); default: told from the first record that is a JSON
    object. `system_prompt`: a system turn put first where a conversation has none.
    `tokenizer`: the chat template's default system prompt, if any, made explicit the same
    way (`course.templates.with_default_system`), so that the data, the labels and the
    evaluation prompts agree with what the model sees; and a record whose content holds one
    of its special tokens' text is rejected (kind `special_token`).

    Raises DataFormatError (naming the file) only when nothing can be read: the file is not
    valid JSON as a whole, or no record tells its format."""
    path = Path(path)
    layout, items = read_records(path)
    if isinstance(mapping, str):
        if mapping not in PRESETS:
            raise DataFormatError(f"mapping {mapping!r}: expected one of {FORMATS}")
        mapping = PRESETS[mapping]
    elif isinstance(mapping, dict):
        mapping = ColumnMapping.from_dataset_info(mapping)
    out = UserData(path, mapping.name if mapping else None, layout)
    unused: Counter = Counter()
    for where, record in items:
        if isinstance(record, Rejection):
            out.rejected.append(record)
            continue
        if not isinstance(record, dict):
            out.rejected.append(Rejection(where, "(record)", "not_an_object",
                                          f"a JSON {type(record).__name__}, expected an object"))
            continue
        if mapping is None:
            name = detect_format(record)
            if name is None:
                raise DataFormatError(
                    f"{where}: cannot tell the format from the fields {sorted(record)}; "
                    f"expected 'messages', 'conversations' or 'instruction' + 'output', or "
                    "give a mapping (a LLaMA-Factory dataset_info.json entry)")
            mapping = PRESETS[name]
            out.format = name
        for key in record:
            if key not in _used_columns(mapping):
                unused[key] += 1
        try:
            for media in _MEDIA:
                if _nonempty(record.get(mapping.columns.get(media, media))):
                    raise _Rejected(mapping.columns.get(media, media), "media", MEDIA_REJECTED)
            if mapping.formatting == "alpaca":
                messages = _alpaca(record, mapping)
            else:
                messages = _sharegpt(record, mapping, unused)
            check_structure(messages)
            if tokenizer is not None:
                check_special_tokens(messages, tokenizer)
        except _Rejected as err:
            out.rejected.append(Rejection(where, err.field, err.kind, err.reason))
            continue
        if system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system_prompt})
        if tokenizer is not None:
            from course.templates import with_default_system

            messages = with_default_system(messages, tokenizer)
        out.records.append({"id": where, "messages": messages})
    if out.format is None and mapping is None:
        first = f"; first: {out.rejected[0]}" if out.rejected else ""
        raise DataFormatError(f"{path}: no record is a JSON object, so the format cannot be "
                              f"told ({len(out.rejected)} records rejected{first})")
    out.unused_fields = dict(sorted(unused.items(), key=lambda kv: (-kv[1], kv[0])))
    return out
