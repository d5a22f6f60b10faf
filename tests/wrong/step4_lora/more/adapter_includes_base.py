"""Bug: the adapter saves each LoRA layer's whole state_dict, base weights included: the
"adapter" is as large as the targeted layers and has keys peft does not expect."""
EXPECT_LOSE = ["adapter_state_dict_hidden", "adapter_state_dict"]


def adapter_state_dict(model):
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            for key, value in module.state_dict().items():
                state[f"{PEFT_PREFIX}{name}.{key}"] = value.detach().cpu()
    return state
