"""Bug: None content is reported as empty instead of non-string."""
EXPECT_LOSE = ["validate_conversation", "validate_conversation_hidden", "clean_conversations"]

_reference_validate_conversation = validate_conversation


def validate_conversation(messages):
    problems = _reference_validate_conversation(
        [dict(m, content="x") if m["content"] is None else m for m in messages])
    if any(m["content"] is None for m in messages) and "empty_content" not in problems:
        problems.insert(1 if "non_string_content" in problems else 0, "empty_content")
    return problems
