"""What the chatroom accepts as a name or a message; the server is the only judge, the page just shows its verdict."""

from __future__ import annotations

import unicodedata

MAX_NAME_LENGTH = 32
MAX_MESSAGE_LENGTH = 500


class InvalidInput(ValueError):
    """Rejected input; the text is shown to the person who typed it. ``max_length`` is set when only the length is
    wrong, so the page can take the notice away as soon as the text fits."""

    def __init__(self, text: str, max_length: int | None = None) -> None:
        super().__init__(text)
        self.max_length = max_length


def clean_name(value: object) -> str:
    return _clean(value, "name", MAX_NAME_LENGTH, allow_newlines=False)


def clean_message(value: object) -> str:
    return _clean(value, "message", MAX_MESSAGE_LENGTH, allow_newlines=True)


def _clean(value: object, what: str, limit: int, allow_newlines: bool) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"The {what} must be text.")
    text = value.strip()
    if not text:
        raise InvalidInput(f"Please type a {what} first.")
    if len(text) > limit:
        raise InvalidInput(f"That {what} is {len(text)} characters long; the limit is {limit}.", max_length=limit)
    # Control characters (other than a message's line breaks) only ever garble other people's screens.
    allowed = "\n" if allow_newlines else ""
    if any(unicodedata.category(ch) == "Cc" and ch not in allowed for ch in text):
        raise InvalidInput(f"The {what} contains control characters.")
    return text
