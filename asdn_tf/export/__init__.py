"""Exports for serving: a SavedModel with its encoded-image checks, and TFLite."""
