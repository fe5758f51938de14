"""python -m ondevice: the same as the ondevice command."""

from .cli import main

main()
