"""The one exception type that means "the user gave us something wrong".

The CLI prints these as a single line (``synthgen: error: ...``) and exits non-zero, without a
traceback. Anything else that escapes is a bug in synthgen and keeps its traceback.
"""


class SynthgenError(Exception):
    """A user-facing error. The message must name the file or option and the problem, on one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # force one line
