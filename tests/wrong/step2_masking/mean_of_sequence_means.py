"""Bug: "token" normalization averages each sequence's mean loss, so a one-token answer weighs
as much as a fifty-token one and the loss no longer equals the model's own."""
EXPECT_LOSE = ["masked_cross_entropy", "masked_cross_entropy_hidden"]
EXPECT_MESSAGE = "mean of per-sequence means"

_reference_masked_cross_entropy = masked_cross_entropy


def masked_cross_entropy(logits, labels, normalization="token"):
    return _reference_masked_cross_entropy(logits, labels, "sequence")  # the bug: always
