"""Training stages: SFT warm-up (`sayo.train.sft`) and attention-reward GRPO (`sayo.train.grpo`)."""
