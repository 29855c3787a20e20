"""The coordinator: a pure core wrapped by thin async shells."""
