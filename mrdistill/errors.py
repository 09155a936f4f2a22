"""The one exception type the CLI turns into a one-line message and exit code 2."""


class MrdistillError(ValueError):
    """Bad input from the user (config, file, option): the message says what and how to fix it."""


def check_choice(kind: str, value: str, choices: list[str] | tuple[str, ...]) -> None:
    """Raise a `MrdistillError` naming the valid choices if `value` is not one of them."""
    if value not in choices:
        raise MrdistillError(f"unknown {kind} {value!r}; valid: {', '.join(sorted(choices))}")


def describe_exception(exc: BaseException) -> str:
    """The reason of an exception in words: its first message line (shortened), or its class name
    with a hint when the message is empty."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    if isinstance(exc, EOFError):
        return "the file ends early (truncated?)" + (f": {text}" if text else "")
    if isinstance(exc, MemoryError):
        return "its contents claim more memory than is available (damaged sizes?)"
    if isinstance(exc, OSError) and exc.strerror:  # "Permission denied", without the repeated path
        return exc.strerror
    return text or f"unexpected {type(exc).__name__} while reading"


class MrdistillNote(UserWarning):
    """Something the user asked for is not available here and mrdistill carries on without it (e.g.
    the compiled kernels of `optim.channels_last`): the `mrdistill` program shows it as one
    `mrdistill: note: ...` line; library callers get an ordinary warning they can filter."""
