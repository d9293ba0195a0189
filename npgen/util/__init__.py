"""Utilities every layer uses: argument checks, atomic file io, progress lines, BLAS threads.

This package imports nothing else of npgen.
"""
