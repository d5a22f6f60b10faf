"""Bug: keys keep peft's in-memory adapter name (".lora_A.default.weight"), which peft strips
when it saves; PeftModel.from_pretrained then finds none of its keys."""
EXPECT_LOSE = ["adapter_state_dict_hidden", "adapter_state_dict"]


def adapter_state_dict(model):
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            for part in ("lora_A", "lora_B"):
                weight = getattr(module, part).weight
                state[f"{PEFT_PREFIX}{name}.{part}.default.weight"] = weight.detach().cpu()
    return state
