"""Bug: the prompt is the bare instruction and input, not the Alpaca template, so training and
inference prompts differ."""
EXPECT_LOSE = ["labels_for_alpaca", "labels_for_alpaca_hidden"]


def labels_for_alpaca(record, tokenizer, record_id=None):
    text = record["instruction"] + ("\n\n" + record["input"] if record.get("input") else "")
    prompt = list(tokenizer(text + "\n", add_special_tokens=False)["input_ids"])
    answer = list(tokenizer(record["output"], add_special_tokens=False)["input_ids"])
    answer.append(tokenizer.eos_token_id)
    return {"input_ids": prompt + answer, "attention_mask": [1] * (len(prompt) + len(answer)),
            "labels": [IGNORE_INDEX] * len(prompt) + answer}
