"""Bug: merge() adds B @ A without the scaling, so the merged model's outputs change."""
EXPECT_LOSE = ["merge_hidden", "merge", "merge_and_unload"]
EXPECT_MESSAGE = "merged without the scaling"


class LoRALinear(LoRALinear):
    def merge(self):
        if self.merged:
            return
        with torch.no_grad():
            self.base_layer.weight += self.lora_B.weight @ self.lora_A.weight
        self.merged = True
