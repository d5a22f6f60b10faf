"""Bug: the LoRA count includes only A (r x d_in) and forgets B (d_out x r)."""
EXPECT_LOSE = ["lora_parameter_count_hidden", "lora_parameter_count"]


def lora_parameter_count(d_in, d_out, r):
    return d_out * d_in, r * d_in
