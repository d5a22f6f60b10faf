"""Bug: only strings are checked for emptiness; None, 42 or a list pass as content."""
EXPECT_LOSE = ["validate_conversation", "validate_conversation_hidden", "clean_conversations"]
EXPECT_MESSAGE = "non-string content accepted"


def validate_conversation(messages):
    problems = []
    if any(isinstance(m["content"], str) and not m["content"].strip() for m in messages):
        problems.append("empty_content")
    roles = [m["role"] for m in messages]
    if roles and roles[0] == "system":
        roles = roles[1:]
    if not roles or len(roles) % 2 or roles != ["user", "assistant"] * (len(roles) // 2):
        problems.append("wrong_role_order")
    return problems
