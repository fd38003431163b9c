"""chatdesk: the database core of a live-chat platform, and its runner."""

__version__ = "0.2.0"
