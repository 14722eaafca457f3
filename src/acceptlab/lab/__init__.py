"""Experiments: one call starts the workers, fires the load, stops everything and keeps the
data as a Run whose meta records its specs (experiment); grids of runs (compare, sweep), and
what rolling restarts cost (restarts)."""
