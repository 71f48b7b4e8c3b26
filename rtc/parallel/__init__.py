"""Mesh and sharding."""
