"""The fleet: many workers, one queue, one quota, through Redis (or Valkey).

``bulkmail enqueue`` (:mod:`bulkmail.fleet.enqueue`) stores a validated campaign and
streams its list into a Redis Stream; ``bulkmail worker`` (:mod:`bulkmail.fleet.worker`)
runs the ordinary engine over :class:`~bulkmail.fleet.intake.RedisIntake`,
:class:`~bulkmail.fleet.books.RedisBooks` and the shared
:class:`~bulkmail.pacing.redis.RedisPacer`; ``bulkmail status`` and ``bulkmail results``
(:mod:`bulkmail.fleet.status`) read it back. Key names: :mod:`bulkmail.fleet.keys`; every
atomic step is one Lua file in ``scripts/``.
"""

__all__: list[str] = []
