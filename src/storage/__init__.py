"""Where the event store lives: a configured PostgreSQL server or an embedded one."""
