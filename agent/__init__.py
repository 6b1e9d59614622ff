"""IXON-style edge alarm agent: Modbus in, IXON Cloud Notify / ilert webhooks out."""

__version__ = "0.1.0"
