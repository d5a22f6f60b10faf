"""Step 2 exercises: which tokens the model is trained on, and how the loss counts them.

tutorial.ipynb imports this module and reloads it before every cell (%autoreload), so edit a
function here, save, and re-run the notebook cell that uses it. Each TODO is a function body;
its docstring is the specification that the checks and the grader hold you to.

    enc = labels_for_conversation(messages, tokenizer)     # input_ids, attention_mask, labels
    batch = collate([enc, ...], tokenizer.pad_token_id)    # padded tensors
    loss = masked_cross_entropy(model(batch["input_ids"]).logits, batch["labels"])

A label is the token id the model must predict at that position, or IGNORE_INDEX (-100) where
nothing is trained. The model shifts by itself: logits at position t are scored against the
label at position t + 1, so labels line up with input_ids, never shifted by hand.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# Given, for the notebook (course/masking_demos.py): seeing the mask, the library way.
from course.masking_demos import (double_shift_demo, library_labels, loss_targets,  # noqa: F401
                                  normalization_example, pre_shifted, visualize_labels)
from course.templates import alpaca_prompt, has_generation_markers  # noqa: F401

IGNORE_INDEX = -100        # PyTorch's cross_entropy and every HF model skip this label
ROLES = ("system", "user", "assistant")
IM_START = "<|im_start|>"  # opens a turn: never trained (the template writes it, not the model)
IM_END = "<|im_end|>"      # closes a turn: trained after an answer, so the model learns to stop
NORMALIZATIONS = ("token", "sequence")
DROP_REASONS = ("no_answer", "answer_truncated")


def piece_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a short piece such as "<|im_start|>user\\n", no special tokens added (a new
    list each call; cached inside, since the same few pieces occur in every conversation)."""
    return list(_cached_ids(tokenizer, text))


@functools.lru_cache(maxsize=256)
def _cached_ids(tokenizer, text: str) -> tuple[int, ...]:
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_batch(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of many texts, no special tokens added, equal to `tokenizer(texts,
    add_special_tokens=False)["input_ids"]`: straight from the Rust tokenizer when there is one
    (it skips transformers' per-text conversion, a third of the time), else the usual call."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.truncation or backend.padding:  # left set by an earlier call
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]


# --- 1. bad input is an error, never a silently all-masked sample --------------------------
def check_conversation(messages: list[dict], record_id: str | int | None = None) -> None:
    """Raise ValueError unless `messages` can be trained on; return None when it can.

    Rejected, each with a ValueError whose message contains `str(record_id)` (the record's id
    or index, so the bad line can be found) and says what is wrong:
    - a turn that is not a dict with "role" and "content" keys (message mentions "turn");
    - an unknown role, i.e. not one of ROLES (the message contains the role, e.g. 'bot');
    - a content that is not a str (None, 42, a list, ...) (message mentions "content");
    - no assistant turn at all, including an empty list (message mentions "assistant").
    Everything else is accepted: empty strings, any order of roles, several system turns.
    Such a conversation would give labels that are all -100: a sample that costs compute and
    teaches nothing, or worse, a NaN loss when a whole batch is like that.

    >>> check_conversation([{"role": "user", "content": "Hi"}], record_id="train-00042")
    Traceback (most recent call last):
    ValueError: record train-00042: no assistant turn, so nothing would be trained
    """
    # TODO: check every turn (dict, known role, str content), then that an assistant speaks.
    ### BEGIN SOLUTION
    where = f"record {record_id}"
    if not isinstance(messages, list):
        raise ValueError(f"{where}: expected a list of turns, got {type(messages).__name__}")
    for i, turn in enumerate(messages):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise ValueError(f"{where}: turn {i} is not a dict with 'role' and 'content'")
        if turn["role"] not in ROLES:
            raise ValueError(f"{where}: turn {i} has unknown role {turn['role']!r}; "
                             f"expected one of {ROLES}")
        if not isinstance(turn["content"], str):
            raise ValueError(f"{where}: turn {i} content is {type(turn['content']).__name__}, "
                             f"expected str")
    if not any(turn["role"] == "assistant" for turn in messages):
        raise ValueError(f"{where}: no assistant turn, so nothing would be trained")
    ### END SOLUTION


# --- 2. labels by hand, turn by turn ---------------------------------------------------------
def labels_for_conversation(messages: list[dict], tokenizer, last_turn_only: bool = False,
                            record_id: str | int | None = None,
                            content_ids: list[list[int]] | None = None) -> dict[str, list[int]]:
    """ChatML token ids of `messages` and their labels, built turn by turn.

    Every turn is the four pieces `<|im_start|>{role}\\n`, content, `<|im_end|>`, `\\n`, each
    tokenized on its own without special tokens added (`piece_ids`, or `content_ids[i]` for the
    content of turn i when given). Labels are IGNORE_INDEX except on what the model must learn
    to say: an assistant turn's content *and* its `<|im_end|>` (the stop signal) get their own
    token ids. Never trained: system and user turns, `<|im_start|>assistant\\n`, the `\\n` after
    `<|im_end|>`. With `last_turn_only=True`, only the last assistant turn is trained; earlier
    ones are context (-100).

    Returns `{"input_ids", "attention_mask", "labels"}`, three lists of ints of one length n;
    attention_mask is all 1. input_ids equal `tokenizer.apply_chat_template(messages)` (checked
    on the whole course data; only a content starting with two or more whitespace characters
    could tokenize differently, with a BPE that merges whitespace with the newline before it).
    The chat template is not used (it may lack the `{% generation %}` markers the library's
    mask needs). Bad input raises ValueError from `check_conversation` (called first).

    >>> enc = labels_for_conversation([{"role": "user", "content": "Hi"},
    ...                                {"role": "assistant", "content": "Hello"}], tokenizer)
    >>> tokenizer.decode([t for t in enc["labels"] if t != IGNORE_INDEX])
    'Hello<|im_end|>'
    """
    check_conversation(messages, record_id)
    if content_ids is None:  # one tokenizer call for all turns (labels_for_batch passes them)
        content_ids = tokenizer([m["content"] for m in messages],
                                add_special_tokens=False)["input_ids"]
    # TODO: append the 4 pieces per turn; label assistant content + <|im_end|>, the rest -100.
    ### BEGIN SOLUTION
    end, newline = piece_ids(tokenizer, IM_END), piece_ids(tokenizer, "\n")
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    input_ids, labels = [], []
    for i, (turn, content) in enumerate(zip(messages, content_ids)):
        header = piece_ids(tokenizer, f"{IM_START}{turn['role']}\n")
        said = list(content) + end  # what the assistant writes, stop token included
        trained = turn["role"] == "assistant" and (i == last or not last_turn_only)
        input_ids += header + said + newline
        labels += [IGNORE_INDEX] * len(header)
        labels += said if trained else [IGNORE_INDEX] * len(said)
        labels += [IGNORE_INDEX] * len(newline)
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}
    ### END SOLUTION


def labels_for_batch(batch: dict[str, list], indices: list[int] | None = None, *, tokenizer,
                     last_turn_only: bool = False) -> dict[str, list]:
    """`datasets.Dataset.map(labels_for_batch, batched=True, with_indices=True,
    fn_kwargs={"tokenizer": tok})`: labels_for_conversation on every row of a batch.

    The contents of the whole batch are tokenized in one call (the Rust tokenizer works through
    a list much faster than one call per text); errors name the row's "id" (or its index)."""
    conversations = batch["messages"]
    record_ids = batch.get("id") or indices or list(range(len(conversations)))
    for messages, record_id in zip(conversations, record_ids):
        check_conversation(messages, record_id)  # before tokenizing: a None content would crash
    flat = encode_batch(tokenizer, [m["content"] for c in conversations for m in c])
    out = {"input_ids": [], "attention_mask": [], "labels": []}
    start = 0
    for messages, record_id in zip(conversations, record_ids):
        enc = labels_for_conversation(messages, tokenizer, last_turn_only, record_id,
                                      content_ids=flat[start:start + len(messages)])
        start += len(messages)
        for key in out:
            out[key].append(enc[key])
    return out


def labels_for_alpaca(record: dict, tokenizer, record_id: str | int | None = None
                      ) -> dict[str, list[int]]:
    """Alpaca without a chat template: the prompt is context, the response is trained.

    input_ids = ids(alpaca_prompt(record)) + ids(record["output"]) + [tokenizer.eos_token_id],
    each part tokenized on its own without special tokens. Labels: IGNORE_INDEX on every
    prompt token; the output's ids and the EOS id on the rest (EOS trained: the model learns to
    stop). Returns `{"input_ids", "attention_mask", "labels"}` (attention_mask all 1), like
    labels_for_conversation. A record whose instruction or output is not a str raises
    ValueError naming `record_id`.
    """
    for field in ("instruction", "output"):
        if not isinstance(record.get(field), str):
            raise ValueError(f"record {record_id}: field {field!r} is missing or not a str")
    # TODO: prompt ids with -100 labels, then output ids + EOS labelled with themselves.
    ### BEGIN SOLUTION
    prompt = list(tokenizer(alpaca_prompt(record), add_special_tokens=False)["input_ids"])
    answer = list(tokenizer(record["output"], add_special_tokens=False)["input_ids"])
    answer.append(tokenizer.eos_token_id)
    input_ids = prompt + answer
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids),
            "labels": [IGNORE_INDEX] * len(prompt) + answer}
    ### END SOLUTION


# --- 3. the loss: shift once, skip -100, choose what to average over -----------------------
def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                         normalization: str = "token") -> torch.Tensor:
    """Next-token cross-entropy on the labelled positions only.

    logits: (B, T, V) float, what the model outputs for `input_ids` (B, T).
    labels: (B, T) long, aligned with input_ids (IGNORE_INDEX where nothing is trained).
    Shift once: logits[:, t] is scored against labels[:, t + 1] (the last logit and the first
    label are unused). Positions whose label is IGNORE_INDEX contribute nothing.
    - "token": mean over all labelled tokens of the batch. Equals `model(input_ids,
      labels=labels).loss` of a transformers model.
    - "sequence": mean over the sequences that have a labelled token of each sequence's own
      mean; a short answer then weighs as much as a long one (its tokens count more).
    Returns a scalar tensor connected to `logits` (so `.backward()` works). If no position is
    labelled, it is 0.0, still connected, with zero gradient: never NaN. Inputs are not modified.
    Computed in float32 like transformers (bf16 logits lose no precision). Any other
    `normalization` raises ValueError.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    # TODO: shift the labels left by one, sum the per-token losses, divide by the count (or 1).
    ### BEGIN SOLUTION
    # Shift the labels, not the logits: label t + 1 goes to position t and the last position
    # gets -100 (nothing follows it). No copy of the large logits tensor, and the same sums as
    # transformers' loss, so the two agree to the last bit.
    targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    flat_logits, flat_targets = logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1)
    counts = (targets != IGNORE_INDEX).sum(dim=1)
    if normalization == "token":
        total = F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE_INDEX,
                                reduction="sum")
        return total / counts.sum().clamp(min=1)  # nothing labelled: 0 / 1, not 0 / 0 = NaN
    per_token = F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE_INDEX,
                                reduction="none").view(targets.shape)  # 0 where ignored
    per_sequence = per_token.sum(dim=1) / counts.clamp(min=1)
    has_labels = counts > 0
    return (per_sequence * has_labels).sum() / has_labels.sum().clamp(min=1)
    ### END SOLUTION


# --- 4. truncation that never hides an empty sample ---------------------------------------
def truncate_and_filter(examples: list[dict], max_length: int
                        ) -> tuple[list[dict], list[tuple[int, str]]]:
    """Cut every example to its first `max_length` tokens; drop the ones left with no label.

    Each example is a dict with "input_ids" and "labels" (and maybe "attention_mask" and other
    keys). Kept examples are new dicts: "input_ids", "labels" and "attention_mask" (if present)
    cut to `max_length`, every other key copied as is; the input dicts are not modified.
    An example with no label other than IGNORE_INDEX after cutting is dropped, with reason
    "no_answer" if it had none even before cutting, else "answer_truncated" (the prompt alone
    fills max_length). Training on it would add nothing but cost, and a batch of only such
    samples has no loss to average.

    Returns `(kept, dropped)`: kept in input order; dropped = [(index, reason), ...] in order,
    index into `examples`. `max_length` < 1 raises ValueError.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    # TODO: keep the first max_length tokens; drop (with its reason) what has no label left.
    ### BEGIN SOLUTION
    kept, dropped = [], []
    for index, example in enumerate(examples):
        cut = {k: (list(v[:max_length]) if k in ("input_ids", "labels", "attention_mask")
                   else v) for k, v in example.items()}
        if any(t != IGNORE_INDEX for t in cut["labels"]):
            kept.append(cut)
        elif any(t != IGNORE_INDEX for t in example["labels"]):
            dropped.append((index, "answer_truncated"))
        else:
            dropped.append((index, "no_answer"))
    return kept, dropped
    ### END SOLUTION


# --- 5. the collator: one rectangle of tokens per batch ------------------------------------
def collate(features: list[dict], pad_token_id: int, pad_to_multiple_of: int | None = None
            ) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples into a batch, like `DataCollatorForSeq2Seq`.

    features: dicts with "input_ids" and "labels" (lists of ints of one length per example)
    and maybe "attention_mask" (other keys are ignored). L = the longest input_ids, rounded up
    to a multiple of `pad_to_multiple_of` when given. Returns int64 tensors of shape (B, L):
    "input_ids" padded with `pad_token_id`; "attention_mask" the example's own (or all 1) then
    0 on padding; "labels" padded with IGNORE_INDEX. Labels are never derived from input_ids:
    the pad id may equal a real token (some tokenizers pad with EOS), and that token must stay
    trained wherever the example itself has it.
    """
    # TODO: find L, then pad the three lists of every example to L and stack them as tensors.
    ### BEGIN SOLUTION
    length = max(len(f["input_ids"]) for f in features)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    batch = {"input_ids": [], "attention_mask": [], "labels": []}
    for f in features:
        ids = list(f["input_ids"])
        gap = length - len(ids)
        batch["input_ids"].append(ids + [pad_token_id] * gap)
        batch["attention_mask"].append(list(f.get("attention_mask", [1] * len(ids))) + [0] * gap)
        batch["labels"].append(list(f["labels"]) + [IGNORE_INDEX] * gap)
    return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
    ### END SOLUTION
