"""The training half's one error: a run that cannot go on, with a message that says why and what
is kept. ``python -m train`` prints it and exits with status 1."""


class TrainingError(RuntimeError):
    """The run cannot go on: the message says why and what is kept."""
