"""Delta Lake: table schemas, the keyed writer, and table upkeep."""
