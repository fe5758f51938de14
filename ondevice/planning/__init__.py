"""Planning a load: what this machine is, which hardware profile suits it, the model-pair profiles,
whether a model fits in memory (the pre-flight), and which quantization levels to pick."""
