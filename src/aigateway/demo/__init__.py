"""Demo mode: a clearly labelled local mock upstream, for trying the whole flow offline."""
