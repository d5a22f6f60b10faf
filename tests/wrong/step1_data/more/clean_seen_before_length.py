"""Bug: a conversation counts as seen before its length is checked, so the copy of an over-long
one is reported as a duplicate instead of too long."""
EXPECT_LOSE = ["clean_conversations_hidden"]


def clean_conversations(conversations, tokenizer, max_tokens):
    kept, dropped, seen = [], [], set()
    for index, messages in enumerate(conversations):
        problems = validate_conversation(messages)
        if problems:
            dropped.append((index, problems[0]))
            continue
        key = tuple((m["role"], m["content"]) for m in messages)
        if key in seen:
            dropped.append((index, "duplicate"))
            continue
        seen.add(key)
        if len(format_conversation(messages, tokenizer)["input_ids"]) > max_tokens:
            dropped.append((index, "too_long"))
        else:
            kept.append(messages)
    return kept, dropped
