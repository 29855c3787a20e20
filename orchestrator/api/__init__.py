"""The HTTP API (FastAPI on uvicorn) and the dashboard it serves: reads over the projection,
writes onto the bus, each answered with log positions a later read can wait for."""
