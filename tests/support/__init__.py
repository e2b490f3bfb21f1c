"""Helpers shared by the end-to-end tests: real processes, real sockets on 127.0.0.1."""
