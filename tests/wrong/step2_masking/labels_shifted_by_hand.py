"""Bug: labels are shifted by hand ("the model predicts the next token") although the model
shifts them again: it is trained to predict the token after the next one."""
EXPECT_LOSE = ["labels_for_conversation", "labels_for_conversation_hidden"]
EXPECT_MESSAGE = "shifted by hand"

_reference_labels_for_conversation = labels_for_conversation


def labels_for_conversation(messages, tokenizer, last_turn_only=False, record_id=None,
                            content_ids=None):
    enc = _reference_labels_for_conversation(messages, tokenizer, last_turn_only, record_id,
                                             content_ids)
    enc["labels"] = enc["labels"][1:] + [IGNORE_INDEX]  # the bug: label t := label t + 1
    return enc
