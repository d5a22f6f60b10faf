"""Bug: the mask ends one token late: the template's newline after <|im_end|> is trained."""
EXPECT_LOSE = ["labels_for_conversation", "labels_for_conversation_hidden"]


def labels_for_conversation(messages, tokenizer, last_turn_only=False, record_id=None,
                            content_ids=None):
    check_conversation(messages, record_id)
    if content_ids is None:
        content_ids = tokenizer([m["content"] for m in messages],
                                add_special_tokens=False)["input_ids"]
    end, newline = piece_ids(tokenizer, IM_END), piece_ids(tokenizer, "\n")
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    input_ids, labels = [], []
    for i, (turn, content) in enumerate(zip(messages, content_ids)):
        header = piece_ids(tokenizer, f"{IM_START}{turn['role']}\n")
        said = list(content) + end + newline  # the bug: the newline is part of the answer
        trained = turn["role"] == "assistant" and (i == last or not last_turn_only)
        input_ids += header + said
        labels += [IGNORE_INDEX] * len(header)
        labels += said if trained else [IGNORE_INDEX] * len(said)
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}
