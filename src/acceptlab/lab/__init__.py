"""Experiments: one call starts the workers, fires the load, stops everything and keeps
the data (a Run); grids of experiments, rolling restarts, the demo's comparison.
"""
