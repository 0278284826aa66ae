"""`riskstream generate` and `riskstream train`: plugged into the CLI by the `riskstream.commands` entry points."""
