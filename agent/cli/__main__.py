"""`python -m agent.cli` runs the command line."""

from agent.cli.main import main

main()
