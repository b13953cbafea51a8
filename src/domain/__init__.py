"""The domain: aggregates, their events and the policy's rules.

Imports only the standard library and eventsourcing; it knows nothing of HTTP,
PostgreSQL, Kafka or settings.
"""
