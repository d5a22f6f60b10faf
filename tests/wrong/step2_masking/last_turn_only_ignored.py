"""Bug: `last_turn_only` is accepted but ignored: every assistant turn is trained even when only
the last one should be."""
EXPECT_LOSE = ["labels_for_conversation", "labels_for_conversation_hidden"]
EXPECT_MESSAGE = "last_turn_only ignored"

_reference_labels_for_conversation = labels_for_conversation


def labels_for_conversation(messages, tokenizer, last_turn_only=False, *args, **kwargs):
    return _reference_labels_for_conversation(messages, tokenizer, False, *args, **kwargs)
