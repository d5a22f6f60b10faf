"""Bug: only "" counts as empty; "   " or "\n" pass, and blank answers get trained on."""
EXPECT_LOSE = ["validate_conversation", "validate_conversation_hidden", "clean_conversations"]
EXPECT_MESSAGE = "whitespace-only content accepted"


def validate_conversation(messages):
    problems = []
    contents = [m["content"] for m in messages]
    if any(not isinstance(c, str) for c in contents):
        problems.append("non_string_content")
    if any(c == "" for c in contents):
        problems.append("empty_content")
    roles = [m["role"] for m in messages]
    if roles and roles[0] == "system":
        roles = roles[1:]
    if not roles or len(roles) % 2 or roles != ["user", "assistant"] * (len(roles) // 2):
        problems.append("wrong_role_order")
    return problems
