"""The one exception type for mistakes a user can make (flags, data, paths).

The command line turns it into one line on stderr and exit status 2.
"""


class UserInputError(ValueError):
    """A problem with the run's configuration, data or paths, with how to fix it."""


class MissingExtraError(UserInputError):
    """An optional dependency (a package extra such as `experiments`) is not installed."""
