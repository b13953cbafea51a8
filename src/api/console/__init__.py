"""The operator console: server-rendered pages under ``/console`` for the privacy team and
the auditors, one more client of the API's own route functions, views and roles."""

from rightsledger.api.console.router import router

__all__ = ["router"]
