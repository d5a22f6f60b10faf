"""Bug: examples are cut to max_length - 1 tokens."""
EXPECT_LOSE = ["truncate_and_filter", "truncate_and_filter_hidden"]

_reference_truncate_and_filter = truncate_and_filter


def truncate_and_filter(examples, max_length):
    kept, dropped = _reference_truncate_and_filter(examples, max(max_length - 1, 1))
    return kept, dropped
