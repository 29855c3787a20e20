"""OpenTelemetry traces of runs, built from the run log (spans.py pure, the rest its shell)."""
