"""The one exception type users see: a one-line message naming the file, field or line at fault."""


class XDistilError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""
