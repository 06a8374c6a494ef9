"""Placeholder until the client lands."""


class Monitor:
    pass
