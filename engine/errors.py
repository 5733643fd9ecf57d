"""Our exceptions.  A leaf module: plugins and the engine both raise these.

Anything derived from UsageError is the user's to fix: the command line
prints its one-line message and exits 2, with a traceback only under --debug.
"""


class ServegaugeError(Exception):
    """Base of every error servegauge raises on purpose."""


class UsageError(ServegaugeError):
    """Bad input: a flag, a file, a plugin name.  The message names the fix."""


class DatasetError(UsageError):
    """A dataset file is missing, unreadable or not in the expected format."""


class PluginError(UsageError):
    """A plugin is unknown, failed to import, or failed to construct."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (stop, keep what was measured), exit 143."""


class PluginFailed(PluginError):
    """The API plugin failed on each of the first requests: the run stopped.
    Its one line was printed at the first failure, so it is not repeated."""

    reported = True
