"""Bug: no mask at all: labels = input_ids, so the system prompt, the user's questions and the
template tokens are trained along with the answers."""
EXPECT_LOSE = ["labels_for_conversation", "labels_for_conversation_hidden"]
EXPECT_MESSAGE = "no mask at all"

_reference_labels_for_conversation = labels_for_conversation


def labels_for_conversation(messages, tokenizer, *args, **kwargs):
    enc = _reference_labels_for_conversation(messages, tokenizer, *args, **kwargs)
    return {**enc, "labels": list(enc["input_ids"])}
