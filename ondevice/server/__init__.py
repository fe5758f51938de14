"""`ondevice serve`: a local OpenAI-compatible HTTP API over the model workers."""
