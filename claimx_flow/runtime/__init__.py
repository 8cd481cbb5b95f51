"""What a stage process runs beside its dataflow: health, metrics, preflight, recovery."""
