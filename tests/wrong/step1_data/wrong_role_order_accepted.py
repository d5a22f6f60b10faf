"""Bug: the role sequence is never checked: answers before questions pass as valid."""
EXPECT_LOSE = ["validate_conversation", "validate_conversation_hidden", "clean_conversations"]
EXPECT_MESSAGE = "wrong role order accepted"


def validate_conversation(messages):
    problems = []
    contents = [m["content"] for m in messages]
    if any(not isinstance(c, str) for c in contents):
        problems.append("non_string_content")
    if any(isinstance(c, str) and not c.strip() for c in contents):
        problems.append("empty_content")
    return problems
