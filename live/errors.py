"""Errors that end a command with one line for the user instead of a traceback."""


class UserError(Exception):
    """Something the user can fix: a missing file, an unreadable image, a bad option. The message is one line."""
