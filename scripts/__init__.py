"""Operator commands: thin wrappers over intake, storage and workers."""
