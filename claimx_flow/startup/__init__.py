"""Whether and where a stage starts: its preflight checks, its recovery directory and the offsets
it resumes from."""
