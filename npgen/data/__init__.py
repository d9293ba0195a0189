"""Data sets of the paper's experiments."""

from .gaussians import two_gaussians

__all__ = ["two_gaussians"]
