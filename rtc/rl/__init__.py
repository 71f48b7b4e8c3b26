"""Reinforcement learning on verifiable rewards: GRPO and its variants, PPO with a critic."""
