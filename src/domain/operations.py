"""Operators' decisions about the service itself that the history must show."""

from __future__ import annotations

from typing import ClassVar

from eventsourcing.domain import Aggregate

from rightsledger.domain.errors import InvalidCommandError
from rightsledger.domain.personal import Internal


class FollowerSkip(Aggregate):
    """An operator told a parked follower to step over one event of the log."""

    class Recorded(Aggregate.Created):
        id_on_topic: ClassVar[str | None] = None
        follower: Internal[str]
        position: Internal[int]
        reason: Internal[str]
        actor: Internal[str]

    def __init__(self, follower: str, position: int, reason: str, actor: str) -> None:
        self.follower = follower
        self.position = position
        self.reason = reason
        self.actor = actor

    @classmethod
    def record(cls, *, follower: str, position: int, reason: str, actor: str) -> FollowerSkip:
        if position < 1:
            raise InvalidCommandError("a skipped position is a log position", field="position")
        if not follower.strip():
            raise InvalidCommandError("name the follower", field="follower")
        return cls._create(
            cls.Recorded,
            follower=follower,
            position=position,
            reason=reason[:500],
            actor=actor,
        )
