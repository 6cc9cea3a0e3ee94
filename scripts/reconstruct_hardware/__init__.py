"""Rebuilds the reconstructed board trees under hardware/ (see hardware/README.md)."""
