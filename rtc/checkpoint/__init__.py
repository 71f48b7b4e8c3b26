"""Orbax checkpoints of the train state and its JSON metadata."""

from rtc.checkpoint.checkpointer import CheckpointError, Checkpointer, abstract_state
from rtc.checkpoint.fingerprint import tree_fingerprint

__all__ = ["CheckpointError", "Checkpointer", "abstract_state", "tree_fingerprint"]
