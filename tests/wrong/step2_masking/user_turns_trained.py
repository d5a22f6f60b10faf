"""Bug: user (and system) contents are trained too, so the model also learns to write
questions and stories instead of answering them (a common first SFT script does this)."""
EXPECT_LOSE = ["labels_for_conversation", "labels_for_conversation_hidden"]
EXPECT_MESSAGE = "user turns trained"


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
        said = list(content) + end
        # the bug: every role's content is trained (last_turn_only only affects the assistant)
        trained = turn["role"] != "assistant" or i == last or not last_turn_only
        input_ids += header + said + newline
        labels += [IGNORE_INDEX] * len(header)
        labels += said if trained else [IGNORE_INDEX] * len(said)
        labels += [IGNORE_INDEX] * len(newline)
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}
