"""Bug: an invalid conversation is dropped with its last problem code instead of its first."""
EXPECT_LOSE = ["clean_conversations_hidden"]

_reference_clean_conversations = clean_conversations


def clean_conversations(conversations, tokenizer, max_tokens):
    kept, dropped = _reference_clean_conversations(conversations, tokenizer, max_tokens)
    problems = [validate_conversation(conversations[i]) for i, _ in dropped]
    return kept, [(i, p[-1] if p else reason) for (i, reason), p in zip(dropped, problems)]
