"""Bug: every dropped example is reported as "answer_truncated", also those that never had an
answer (a data problem, not a length problem)."""
EXPECT_LOSE = ["truncate_and_filter", "truncate_and_filter_hidden"]

_reference_truncate_and_filter = truncate_and_filter


def truncate_and_filter(examples, max_length):
    kept, dropped = _reference_truncate_and_filter(examples, max_length)
    return kept, [(i, "answer_truncated") for i, _ in dropped]
