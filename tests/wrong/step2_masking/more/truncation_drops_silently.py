"""Bug: empty examples are dropped but not reported, so nobody notices that a max_length is
too short for the data."""
EXPECT_LOSE = ["truncate_and_filter", "truncate_and_filter_hidden"]

_reference_truncate_and_filter = truncate_and_filter


def truncate_and_filter(examples, max_length):
    kept, _ = _reference_truncate_and_filter(examples, max_length)
    return kept, []
