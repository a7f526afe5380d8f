"""The one exception type users see: a one-line message naming the file, field or line at fault."""


class XDistilError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was, so it unwinds like Ctrl-C (atomic writes finish or are discarded)."""
