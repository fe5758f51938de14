"""Model runtime: llama.cpp in worker processes."""
