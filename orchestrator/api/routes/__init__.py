"""The API's resources, one module each; `app.py` mounts their routers under /api/v1."""
