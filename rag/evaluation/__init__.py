"""Measuring the pipeline on datasets in the shared format (corpus.jsonl, test.jsonl)."""
