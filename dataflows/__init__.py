"""One Bytewax dataflow per pipeline stage, each run as ``python -m bytewax.run dataflows.<stage>``."""
