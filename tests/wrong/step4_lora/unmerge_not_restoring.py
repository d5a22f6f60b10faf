"""Bug: unmerge() only clears the flag; the update stays in W and the LoRA path adds it again."""
EXPECT_LOSE = ["unmerge_hidden", "unmerge"]
EXPECT_MESSAGE = "unmerge does not restore the base weight"


class LoRALinear(LoRALinear):
    def unmerge(self):
        self.merged = False
