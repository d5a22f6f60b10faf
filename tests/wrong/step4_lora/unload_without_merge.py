"""Bug: merge_and_unload puts the base layers back without merging: the fine-tuning is lost."""
EXPECT_LOSE = ["merge_and_unload_hidden", "merge_and_unload"]
EXPECT_MESSAGE = "without merging"


def merge_and_unload(model):
    for name, layer in list(lora_layers(model).items()):
        model.set_submodule(name, layer.base_layer)
    return model
