"""Converters: Hugging Face checkpoints to GGUF, and quantization (see the converters issue)."""
