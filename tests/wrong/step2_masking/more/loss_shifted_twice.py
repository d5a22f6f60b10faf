"""Bug: the labels are shifted by two (a hand shift on top of the loss's own)."""
EXPECT_LOSE = ["masked_cross_entropy", "masked_cross_entropy_hidden"]

_reference_masked_cross_entropy = masked_cross_entropy


def masked_cross_entropy(logits, labels, normalization="token"):
    return _reference_masked_cross_entropy(logits, pre_shifted(labels), normalization)
