"""Bug: a broken record raises ValueError("invalid input"): right type, but the message names
neither the record nor what is wrong with it."""
EXPECT_LOSE = ["check_conversation", "check_conversation_hidden"]
EXPECT_MESSAGE = "error without the record id"

_reference_check_conversation = check_conversation


def check_conversation(messages, record_id=None):
    try:
        _reference_check_conversation(messages, record_id)
    except ValueError:
        raise ValueError("invalid input") from None
