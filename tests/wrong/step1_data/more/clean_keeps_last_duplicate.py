"""Bug: of several copies the last is kept, not the first."""
EXPECT_LOSE = ["clean_conversations_hidden"]


def clean_conversations(conversations, tokenizer, max_tokens):
    def key(messages):
        return tuple((m["role"], m["content"]) for m in messages)

    last = {key(m): i for i, m in enumerate(conversations) if not validate_conversation(m)}
    kept, dropped = [], []
    for index, messages in enumerate(conversations):
        problems = validate_conversation(messages)
        if problems:
            dropped.append((index, problems[0]))
        elif last[key(messages)] != index:
            dropped.append((index, "duplicate"))
        elif len(format_conversation(messages, tokenizer)["input_ids"]) > max_tokens:
            dropped.append((index, "too_long"))
        else:
            kept.append(messages)
    return kept, dropped
