"""The one exception type users see.

Library code raises `JaxvizError` for anything caused by the user's input (a bad
layer name, an unreadable file, wrong weights). The CLI prints its message as a
single line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class JaxvizError(Exception):
    """A user-facing error: the message alone must tell the user what to fix."""
