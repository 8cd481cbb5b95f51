"""What a stage process runs beside its dataflow: health probes, metrics, source observers."""
