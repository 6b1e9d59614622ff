"""Primitives every stage shares, each written once: ids, timestamps, values, retry timing.

Nothing here imports a stage, so any stage may import from here.
"""
