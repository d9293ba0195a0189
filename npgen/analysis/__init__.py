"""What npgen proves and measures about networks: exact Lipschitz constants and the paper's theory.

:mod:`npgen.analysis.lipschitz` computes constants from a network's weights (it reads
:mod:`npgen.nn`); :mod:`npgen.analysis.theory` holds the paper's Section 3 bounds as functions;
:mod:`npgen.analysis.mixtures` fits Gaussian mixtures to samples and measures MW2 and MGW2
between mixtures (it loads POT and scikit-learn when its functions first need them).
:mod:`npgen.analysis.transport` computes exact optimal-transport costs between images.
"""

from . import lipschitz, theory, transport

__all__ = ["lipschitz", "theory", "transport"]
