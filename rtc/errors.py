"""The error a run raises for a setting or input it rejects (the CLI prints it in one line)."""


class ConfigError(ValueError):
    """A configuration value or input that cannot work: the message names it and what would."""


class PretrainedError(ConfigError):
    """A pretrained checkpoint or tokenizer rtc cannot load: the message names the file, tensor or field."""
