"""The HTTP API (FastAPI): routers by resource, pydantic models, problem+json errors."""
