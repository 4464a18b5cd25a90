"""The `retail` command line: one sub-command group per face of the platform."""
