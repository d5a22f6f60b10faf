"""Bug: "sequence" normalization divides by the batch size, counting sequences without labels
as zero losses."""
EXPECT_LOSE = ["masked_cross_entropy_hidden"]

_reference_masked_cross_entropy = masked_cross_entropy


def masked_cross_entropy(logits, labels, normalization="token"):
    if normalization == "token":
        return _reference_masked_cross_entropy(logits, labels, normalization)
    logits, targets = logits[:, :-1, :], labels[:, 1:]
    per_token = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                ignore_index=IGNORE_INDEX, reduction="none").view(targets.shape)
    counts = (targets != IGNORE_INDEX).sum(dim=1)
    return (per_token.sum(dim=1) / counts.clamp(min=1)).mean()  # the bug: all sequences
