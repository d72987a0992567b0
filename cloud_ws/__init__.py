"""The ``cloud-ws`` command line and what its commands share (the outputs file)."""
