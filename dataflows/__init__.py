"""One Bytewax dataflow per pipeline stage: ``python -m bytewax.run dataflows.<stage>``."""
