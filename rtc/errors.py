"""The error a run raises for a setting or input it rejects (the CLI prints it in one line)."""


class ConfigError(ValueError):
    """A configuration value or input that cannot work: the message names it and what would."""
