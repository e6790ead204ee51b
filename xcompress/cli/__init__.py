"""The command line: thin wrappers that build configs and call the library."""
