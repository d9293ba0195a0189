"""Data sets of the paper's experiments."""

from .gaussians import two_gaussians
from .mnist import digit_subset, held_out_split, mnist, mnist_source, two_digit_mixture

__all__ = ["digit_subset", "held_out_split", "mnist", "mnist_source", "two_digit_mixture",
           "two_gaussians"]
