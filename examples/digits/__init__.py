"""Digits demo: a versioned data system, pipeline tasks, and a drift story."""
