"""Bug: the `normalization` argument is ignored; "sequence" gives the token mean."""
EXPECT_LOSE = ["masked_cross_entropy", "masked_cross_entropy_hidden"]

_reference_masked_cross_entropy = masked_cross_entropy


def masked_cross_entropy(logits, labels, normalization="token"):
    return _reference_masked_cross_entropy(logits, labels, "token")
