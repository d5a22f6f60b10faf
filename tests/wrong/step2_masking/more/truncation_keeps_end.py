"""Bug: the last max_length tokens are kept (left truncation): the start of the conversation,
with its <|im_start|> and the question, is cut instead of the end."""
EXPECT_LOSE = ["truncate_and_filter", "truncate_and_filter_hidden"]


def truncate_and_filter(examples, max_length):
    kept, dropped = [], []
    for index, example in enumerate(examples):
        cut = {k: (list(v[-max_length:]) if k in ("input_ids", "labels", "attention_mask")
                   else v) for k, v in example.items()}
        if any(t != IGNORE_INDEX for t in cut["labels"]):
            kept.append(cut)
        elif any(t != IGNORE_INDEX for t in example["labels"]):
            dropped.append((index, "answer_truncated"))
        else:
            dropped.append((index, "no_answer"))
    return kept, dropped
