"""Batch work spread over a Ray cluster (or a local Ray instance): many videos at once."""
