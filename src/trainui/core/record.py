"""A small value class for start-up-sensitive code.

`dataclasses` costs about 20 ms at start-up (it imports `inspect` and compiles each class's
methods), which alone would break the budget of `trainui validate` (issue 2: at most twice the
time of `python3 -c 'import yaml'`). Records are plain classes with `__slots__`.
"""

from __future__ import annotations


class Record:
    """Fields are the subclass's ``__slots__``; ``_defaults`` gives optional ones."""

    __slots__ = ()
    _defaults: dict[str, object] = {}  # read-only by convention

    def __init__(self, *args: object, **kwargs: object) -> None:
        names = self.__slots__
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes at most {len(names)} values")
        values = {**self._defaults, **dict(zip(names, args, strict=False)), **kwargs}
        unknown = set(values) - set(names)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        for name in names:
            if name not in values:
                raise TypeError(f"{type(self).__name__} needs a value for {name}")
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__
        )

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, n) for n in self.__slots__))

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def as_dict(self) -> dict[str, object]:
        return {n: getattr(self, n) for n in self.__slots__}
