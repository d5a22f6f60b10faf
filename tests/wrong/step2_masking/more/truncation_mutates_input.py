"""Bug: the examples are truncated in place, so the caller's dataset loses its tails."""
EXPECT_LOSE = ["truncate_and_filter", "truncate_and_filter_hidden"]

_reference_truncate_and_filter = truncate_and_filter


def truncate_and_filter(examples, max_length):
    for example in examples:
        for key in ("input_ids", "labels", "attention_mask"):
            if key in example:
                del example[key][max_length:]
    return _reference_truncate_and_filter(examples, max_length)
