"""Bug: logits at t are scored against the label at t (no shift): the model is trained to copy
its input token, not to predict the next one."""
EXPECT_LOSE = ["masked_cross_entropy", "masked_cross_entropy_hidden"]


def masked_cross_entropy(logits, labels, normalization="token"):
    per_token = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                ignore_index=IGNORE_INDEX, reduction="none").view(labels.shape)
    counts = (labels != IGNORE_INDEX).sum(dim=1)
    if normalization == "token":
        return per_token.sum() / counts.sum().clamp(min=1)
    has = counts > 0
    return (per_token.sum(dim=1) / counts.clamp(min=1) * has).sum() / has.sum().clamp(min=1)
