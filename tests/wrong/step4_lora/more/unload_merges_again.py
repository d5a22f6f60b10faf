"""Bug: merge_and_unload adds the update by hand without checking `merged`, so a layer merged
before is merged twice."""
EXPECT_LOSE = ["merge_and_unload_hidden"]


def merge_and_unload(model):
    for name, layer in list(lora_layers(model).items()):
        with torch.no_grad():
            layer.base_layer.weight += layer.get_delta_weight()
        model.set_submodule(name, layer.base_layer)
    return model
