"""Bug: roles only have to alternate; a conversation may end on a user turn (nothing to learn)."""
EXPECT_LOSE = ["validate_conversation", "validate_conversation_hidden", "clean_conversations"]


def validate_conversation(messages):
    problems = []
    contents = [m["content"] for m in messages]
    if any(not isinstance(c, str) for c in contents):
        problems.append("non_string_content")
    if any(isinstance(c, str) and not c.strip() for c in contents):
        problems.append("empty_content")
    roles = [m["role"] for m in messages]
    if roles and roles[0] == "system":
        roles = roles[1:]
    if not roles or any(r != ("user", "assistant")[i % 2] for i, r in enumerate(roles)):
        problems.append("wrong_role_order")
    return problems
