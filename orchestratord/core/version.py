"""The package version: a leaf, so that every layer can name it without importing the
public API above them all."""

__version__ = "0.1.0"
