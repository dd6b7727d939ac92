"""Configuration problems: every one found is collected, so a config with several mistakes is reported whole."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class ConfigError(ValueError):
    """One or more configuration problems, each a line that starts with its key's path."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Problems:
    """The state of building one Config: the environment secrets come from, and every problem found so far, so a
    config with several mistakes is reported whole instead of one mistake per attempt."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def add(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    @contextmanager
    def collect(self) -> Iterator[None]:
        """Record a ConfigError raised inside, and carry on with the next check."""
        try:
            yield
        except ConfigError as exc:
            for problem in exc.problems:
                self.add(problem)

    def failed(self, *paths: str) -> bool:
        """Whether a key under one of ``paths`` was refused: a check built on its value would only add noise."""
        return any(problem.startswith(paths) for problem in self.problems)

    def done(self) -> None:
        if self.problems:
            raise ConfigError(*self.problems)
