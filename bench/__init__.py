"""Baton's benchmark suite: the real deployment (every transition durable), on the embedded
SQLite bus, and with `python -m bench kafka` side by side on a real Kafka broker.

Run everything with `python -m bench`, or one benchmark with `python -m bench chain`.
Each benchmark lives in its own module and exposes `measure(...)` (async, sizes as arguments,
returns a `Report`; the ones that run the app take a `bus_url`) so the smoke tests can run it
at tiny sizes.
"""
