"""Bug: problem codes are sorted alphabetically, not in the order of PROBLEMS."""
EXPECT_LOSE = ["validate_conversation", "validate_conversation_hidden"]

_reference_validate_conversation = validate_conversation


def validate_conversation(messages):
    return sorted(_reference_validate_conversation(messages))
