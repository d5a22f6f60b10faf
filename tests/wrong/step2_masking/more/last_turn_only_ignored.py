"""Bug: last_turn_only is ignored; every assistant turn is trained."""
EXPECT_LOSE = ["labels_for_conversation", "labels_for_conversation_hidden"]

_reference_labels_for_conversation = labels_for_conversation


def labels_for_conversation(messages, tokenizer, last_turn_only=False, record_id=None,
                            content_ids=None):
    return _reference_labels_for_conversation(messages, tokenizer, False, record_id, content_ids)
