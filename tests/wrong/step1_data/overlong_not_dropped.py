"""Bug: max_tokens is ignored, so samples longer than the context are kept (and get cut)."""
EXPECT_LOSE = ["clean_conversations", "clean_conversations_hidden"]
EXPECT_MESSAGE = "over-long samples not dropped"


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
        else:
            seen.add(key)
            kept.append(messages)
    return kept, dropped
