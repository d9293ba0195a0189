"""The paper's study: run configurations and presets, sweeps, figures and the report.

The top layer: it trains :mod:`npgen.models`, measures them with :mod:`npgen.analysis`, and
nothing below imports it.
"""
