"""User-facing errors. The CLI prints any `AelabError` as one line and exits 1."""


class AelabError(Exception):
    """An error the user can fix (bad file, bad flag, diverged training); never a bug."""


class DataError(AelabError):
    """A dataset file is missing, corrupt, or could not be downloaded."""


class RunError(AelabError):
    """A run folder is missing, locked, corrupt, or would be overwritten."""


class DivergedError(AelabError):
    """Training produced a non-finite loss or gradient."""
