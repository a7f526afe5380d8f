"""Evaluation: quality, loyalty, size and speed of teacher and student, and the run report."""
