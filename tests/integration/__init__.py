"""Integration tests: real SQLite bus, real agents and worker processes, no mocks."""
