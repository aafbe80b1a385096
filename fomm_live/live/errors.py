"""Errors that end a command with one line for the user instead of a traceback, and the one an output raises when
it cannot open (the loop goes on without it)."""


class UserError(Exception):
    """Something the user can fix: a missing file, an unreadable image, a bad option. The message is one line."""


class SinkUnavailable(RuntimeError):
    """A sink (virtual camera, preview window) could not be opened; the message says how to make it available."""
