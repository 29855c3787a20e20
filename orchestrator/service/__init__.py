"""Thin async shells around the pure core: coordinator loops, stages, views."""
