"""isotune: sentence encoders trained for alignment and uniformity on the unit hypersphere."""

__version__ = "0.1.0"
