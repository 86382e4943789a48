"""uvicorn's own WebSocket test suite, from its sdist, against wsfast.uvicorn."""
