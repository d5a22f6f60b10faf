"""Bug: length is measured in characters (a guess of 4 per token), not in tokens."""
EXPECT_LOSE = ["clean_conversations", "clean_conversations_hidden"]


def clean_conversations(conversations, tokenizer, max_tokens):
    kept, dropped, seen = [], [], set()
    for index, messages in enumerate(conversations):
        problems = validate_conversation(messages)
        key = tuple((m["role"], m["content"]) for m in messages) if not problems else None
        if problems:
            dropped.append((index, problems[0]))
        elif key in seen:
            dropped.append((index, "duplicate"))
        elif len(format_conversation(messages, tokenizer)["text"]) > 4 * max_tokens:
            dropped.append((index, "too_long"))
        else:
            seen.add(key)
            kept.append(messages)
    return kept, dropped
