"""The one exception type for errors a user can cause (bad file, wrong size, missing weights)."""


class EdgefillError(Exception):
    """A problem with the user's input or setup; the message says what to do about it.

    The CLI prints it as a single line without a traceback and exits with status 2.
    """
