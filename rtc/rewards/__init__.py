"""Rewards: rule verifiers (answer, format, overlong) and learned reward models (ORM, PRM)."""
