"""Handlers of the command-line subcommands (composition of services per command)."""
