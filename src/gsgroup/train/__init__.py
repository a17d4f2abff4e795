"""Losses, densification and the training loop."""
