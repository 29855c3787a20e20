"""Baton's benchmark suite: the real embedded deployment (SQLite bus, every transition durable).

Run everything with `python -m bench`, or one benchmark with `python -m bench chain`.
Each benchmark lives in its own module and exposes `measure(...)` (async, sizes as arguments,
returns a `Report`) so the smoke tests can run it at tiny sizes.
"""
