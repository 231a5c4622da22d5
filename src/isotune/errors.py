"""Exceptions for problems the user can fix: the CLI prints their message without a traceback."""


class ConfigError(ValueError):
    """A recipe key, option or value that is unknown, invalid or impossible."""


class DataError(ValueError):
    """Input data that cannot be read or used as given (missing, malformed or empty)."""


class ModelNotFoundError(FileNotFoundError):
    """A model that is neither a local folder, nor bundled, nor reachable on the Hugging Face Hub."""


class TrainingError(RuntimeError):
    """A training run that had to stop, for example on a non-finite loss."""


class PublishError(RuntimeError):
    """A card, a file or a Hub repository that stops `isotune publish`; the message states what was committed."""
