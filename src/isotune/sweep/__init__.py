"""Hyperparameter sweeps: expand a grid into runs (grid), train or resume them (runner), record the sweep
(record) and write its table, correlations and plots (report, plots)."""
