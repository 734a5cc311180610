"""One exception type for bad input, so the CLI can print one line instead of a traceback."""


class ConfigError(ValueError):
    """Bad user input; the message is one line that names the fix."""
