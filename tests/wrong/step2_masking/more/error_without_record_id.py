"""Bug: errors say what is wrong but not in which record, so the bad line cannot be found."""
EXPECT_LOSE = ["check_conversation", "check_conversation_hidden"]

_reference_check_conversation = check_conversation


def check_conversation(messages, record_id=None):
    try:
        _reference_check_conversation(messages, record_id)
    except ValueError as err:
        raise ValueError(str(err).split(": ", 1)[1]) from None
