"""Training recipes: SFT, offline DPO, online DPO, GRPO and PPO, one self-contained file each."""
