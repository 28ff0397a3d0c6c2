"""Evaluation: datasets, retrieval metrics and reports."""
