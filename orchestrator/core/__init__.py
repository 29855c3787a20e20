"""The pure core: specs, state, evolve, decide, placement. No I/O, no clock, no randomness."""
