"""Bug: the duplicate check compares contents with their whitespace collapsed, so "Who found the
kite?" and "Who found  the kite?" count as one conversation and the second is dropped, although
the specification says a duplicate has the same contents (different text is a different sample)."""
EXPECT_LOSE = ["clean_conversations_hidden"]


def clean_conversations(conversations, tokenizer, max_tokens):
    kept, dropped, seen = [], [], set()
    for index, messages in enumerate(conversations):
        problems = validate_conversation(messages)
        key = (tuple((m["role"], " ".join(m["content"].split())) for m in messages)
               if not problems else None)  # the bug: whitespace ignored
        if problems:
            dropped.append((index, problems[0]))
        elif key in seen:
            dropped.append((index, "duplicate"))
        elif len(format_conversation(messages, tokenizer)["input_ids"]) > max_tokens:
            dropped.append((index, "too_long"))
        else:
            seen.add(key)
            kept.append(messages)
    return kept, dropped
