"""Bug: the Alpaca mask covers the prompt plus one token, so the response's first token is
never trained."""
EXPECT_LOSE = ["labels_for_alpaca", "labels_for_alpaca_hidden"]

_reference_labels_for_alpaca = labels_for_alpaca


def labels_for_alpaca(record, tokenizer, record_id=None):
    enc = _reference_labels_for_alpaca(record, tokenizer, record_id)
    first = next(i for i, t in enumerate(enc["labels"]) if t != IGNORE_INDEX)
    enc["labels"][first] = IGNORE_INDEX
    return enc
