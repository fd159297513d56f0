"""The ``scorelab`` command line."""
