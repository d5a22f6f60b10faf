"""Bug: duplicates are kept, so repeated samples are over-weighted and memorised."""
EXPECT_LOSE = ["clean_conversations", "clean_conversations_hidden"]
EXPECT_MESSAGE = "duplicates not removed"


def clean_conversations(conversations, tokenizer, max_tokens):
    kept, dropped = [], []
    for index, messages in enumerate(conversations):
        problems = validate_conversation(messages)
        if problems:
            dropped.append((index, problems[0]))
        elif len(format_conversation(messages, tokenizer)["input_ids"]) > max_tokens:
            dropped.append((index, "too_long"))
        else:
            kept.append(messages)
    return kept, dropped
