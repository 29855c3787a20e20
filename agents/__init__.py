"""The worker runtime: capabilities, admission, isolated execution, artifacts, heartbeats."""
