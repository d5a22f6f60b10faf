"""Bug: the Alpaca prompt is trained along with the response (labels = input_ids), so the model
spends its capacity learning to write instructions and stories."""
EXPECT_LOSE = ["labels_for_alpaca", "labels_for_alpaca_hidden"]
EXPECT_MESSAGE = "prompt trained"

_reference_labels_for_alpaca = labels_for_alpaca


def labels_for_alpaca(record, tokenizer, record_id=None):
    enc = _reference_labels_for_alpaca(record, tokenizer, record_id)
    enc["labels"] = list(enc["input_ids"])  # the bug
    return enc
