"""Bug: duplicates are keyed on the first user turn only: same question, other answer is dropped."""
EXPECT_LOSE = ["clean_conversations_hidden"]


def clean_conversations(conversations, tokenizer, max_tokens):
    kept, dropped, seen = [], [], set()
    for index, messages in enumerate(conversations):
        problems = validate_conversation(messages)
        if problems:
            dropped.append((index, problems[0]))
            continue
        key = next(m["content"] for m in messages if m["role"] == "user")
        if key in seen:
            dropped.append((index, "duplicate"))
        elif len(format_conversation(messages, tokenizer)["input_ids"]) > max_tokens:
            dropped.append((index, "too_long"))
        else:
            seen.add(key)
            kept.append(messages)
    return kept, dropped
