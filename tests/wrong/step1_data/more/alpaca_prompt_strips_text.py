"""Bug: instruction and input are stripped, so the prompt is not the data's text."""
EXPECT_LOSE = ["alpaca_prompt_hidden"]


def alpaca_prompt(record):
    if record.get("input"):
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=record["instruction"].strip(),
                                               input=record["input"].strip())
    return ALPACA_PROMPT_NO_INPUT.format(instruction=record["instruction"].strip())
