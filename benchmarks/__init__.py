"""Benchmarks of the patient-view hook: `python benchmarks/run.py [--quick]` (see RESULTS.md)."""
