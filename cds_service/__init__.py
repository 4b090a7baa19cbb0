"""Osteoporosis clinical decision support, served over CDS Hooks 2.0."""

__version__ = "0.1.0"
