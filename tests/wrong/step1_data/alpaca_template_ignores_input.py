"""Bug: the no-input Alpaca template is always used, so the story never reaches the prompt."""
EXPECT_LOSE = ["alpaca_prompt", "alpaca_prompt_hidden"]
EXPECT_MESSAGE = "Alpaca input lost"


def alpaca_prompt(record):
    return ALPACA_PROMPT_NO_INPUT.format(instruction=record["instruction"])
