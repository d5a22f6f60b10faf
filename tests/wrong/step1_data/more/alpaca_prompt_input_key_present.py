"""Bug: the with-input template is chosen whenever the key exists, even for an empty input."""
EXPECT_LOSE = ["alpaca_prompt", "alpaca_prompt_hidden"]


def alpaca_prompt(record):
    if "input" in record:
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=record["instruction"],
                                               input=record["input"])
    return ALPACA_PROMPT_NO_INPUT.format(instruction=record["instruction"])
