"""The one exception type the CLI turns into a one-line message and exit code 2."""


class MrdistillError(ValueError):
    """Bad input from the user (config, file, option): the message says what and how to fix it."""


def check_choice(kind: str, value: str, choices: list[str] | tuple[str, ...]) -> None:
    """Raise a `MrdistillError` naming the valid choices if `value` is not one of them."""
    if value not in choices:
        raise MrdistillError(f"unknown {kind} {value!r}; valid: {', '.join(sorted(choices))}")
