"""The HTTP API (FastAPI): routers per resource, one deps module, a lifespan that owns the fleet."""
