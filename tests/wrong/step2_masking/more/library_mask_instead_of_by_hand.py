"""Bug: the labels come from apply_chat_template's assistant mask instead of being built by
hand, so with a chat template without {% generation %} markers every label is -100."""
EXPECT_LOSE = ["labels_for_conversation_hidden"]


def labels_for_conversation(messages, tokenizer, last_turn_only=False, record_id=None,
                            content_ids=None):
    check_conversation(messages, record_id)
    enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
    if last_turn_only:  # keep only the last run of ones
        start = max(i for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1]))
        mask = [m if i >= start else 0 for i, m in enumerate(mask)]
    return {"input_ids": ids, "attention_mask": [1] * len(ids),
            "labels": [t if m else IGNORE_INDEX for t, m in zip(ids, mask)]}
