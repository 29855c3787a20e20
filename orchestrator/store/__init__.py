"""Read models: SQLite projections of the run log for queries, rebuilt from the log at will."""
