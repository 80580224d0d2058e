"""One module per `advisor` subcommand; see advisor/cli.py."""
