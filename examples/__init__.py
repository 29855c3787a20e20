"""Runnable example pipelines that show Baton end to end."""
