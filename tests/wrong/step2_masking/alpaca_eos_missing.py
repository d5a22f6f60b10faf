"""Bug: no EOS after the Alpaca response, so the model never learns where a response ends."""
EXPECT_LOSE = ["labels_for_alpaca", "labels_for_alpaca_hidden"]
EXPECT_MESSAGE = "EOS missing"


def labels_for_alpaca(record, tokenizer, record_id=None):
    prompt = list(tokenizer(alpaca_prompt(record), add_special_tokens=False)["input_ids"])
    answer = list(tokenizer(record["output"], add_special_tokens=False)["input_ids"])
    input_ids = prompt + answer  # the bug: no tokenizer.eos_token_id
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids),
            "labels": [IGNORE_INDEX] * len(prompt) + answer}
