"""Bug: system turns are ignored wherever they are, so one in the middle passes."""
EXPECT_LOSE = ["validate_conversation", "validate_conversation_hidden"]

_reference_validate_conversation = validate_conversation


def validate_conversation(messages):
    body = [m for m in messages if m["role"] != "system"]
    problems = _reference_validate_conversation(body)
    if not body and messages and "wrong_role_order" not in problems:
        problems.append("wrong_role_order")
    return problems
