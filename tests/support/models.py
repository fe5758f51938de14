"""The bundled real models, by the references the CLI takes."""

SMOL = "bundled:smollm2-135m-instruct"  # instruct, llama architecture, Q4_1
GEMMA = "bundled:gemma-3-270m"  # base, gemma3 architecture, Q4_K_M
