"""`python -m sayo` is the same entry point as the `sayo` console script."""

from sayo.cli import main

main()
