"""Bug: adapter keys lack peft's "base_model.model." prefix, so PeftModel.from_pretrained loads
nothing (it warns about missing keys and keeps B = 0: the fine-tuning is silently lost)."""
EXPECT_LOSE = ["adapter_state_dict_hidden", "adapter_state_dict"]
EXPECT_MESSAGE = "base_model.model."


def adapter_state_dict(model):
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            state[f"{name}.lora_A.weight"] = module.lora_A.weight.detach().cpu()
            state[f"{name}.lora_B.weight"] = module.lora_B.weight.detach().cpu()
    return state
