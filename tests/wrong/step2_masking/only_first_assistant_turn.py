"""Bug: only the first assistant turn is trained (the loop stops labelling after one answer),
so every later answer of a multi-turn conversation is wasted."""
EXPECT_LOSE = ["labels_for_conversation", "labels_for_conversation_hidden"]
EXPECT_MESSAGE = "only the first assistant turn"


def labels_for_conversation(messages, tokenizer, last_turn_only=False, record_id=None,
                            content_ids=None):
    check_conversation(messages, record_id)
    if content_ids is None:
        content_ids = tokenizer([m["content"] for m in messages],
                                add_special_tokens=False)["input_ids"]
    end, newline = piece_ids(tokenizer, IM_END), piece_ids(tokenizer, "\n")
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    first = min(i for i, m in enumerate(messages) if m["role"] == "assistant")
    input_ids, labels = [], []
    for i, (turn, content) in enumerate(zip(messages, content_ids)):
        header = piece_ids(tokenizer, f"{IM_START}{turn['role']}\n")
        said = list(content) + end
        trained = i == (last if last_turn_only else first)  # the bug: `first`, not every turn
        input_ids += header + said + newline
        labels += [IGNORE_INDEX] * len(header)
        labels += said if trained else [IGNORE_INDEX] * len(said)
        labels += [IGNORE_INDEX] * len(newline)
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}
