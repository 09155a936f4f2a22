"""Command line: `mrdistill <command>`; one module per subcommand."""
