"""Data: readers for labeled and unlabeled text, seeded splits, built-in datasets."""
