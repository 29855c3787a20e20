"""Drift monitoring: pure statistics that decide when new data warrants retraining."""
