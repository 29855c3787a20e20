"""Baton's lineage as OpenLineage run events (openlineage-python, the `lineage` extra)."""
