"""The one base class of errors a user can act on.

The ``distalign`` command prints such an error (and any ``ValueError``, the type of
bad-input errors) as one line naming the command, and exits with status 1;
anything else is a bug and keeps its traceback.
"""


class DistalignError(Exception):
    """An error with a message that says what to do (missing source, no token, a run limit...)."""
