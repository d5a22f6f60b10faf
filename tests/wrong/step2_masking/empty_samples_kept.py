"""Bug: truncation keeps examples whose answer was cut off entirely; they carry no label, cost
compute, and a batch of them has no loss to average (NaN)."""
EXPECT_LOSE = ["truncate_and_filter", "truncate_and_filter_hidden"]
EXPECT_MESSAGE = "no label left"


def truncate_and_filter(examples, max_length):
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    kept = [{k: (list(v[:max_length]) if k in ("input_ids", "labels", "attention_mask") else v)
             for k, v in example.items()} for example in examples]
    return kept, []  # the bug: nothing is dropped
