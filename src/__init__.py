"""rightsledger: the data-rights side of a telecom/internet provider's privacy policy.

Every consent change, share, correction and data-rights request is an immutable
domain event; projections, workers and the HTTP API are built around that log.
"""

__version__ = "0.1.0"
