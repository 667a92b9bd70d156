"""Figures of the book, one module per chapter; every function returns a matplotlib Figure."""
