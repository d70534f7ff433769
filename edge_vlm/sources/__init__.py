"""Sources: where a triggered description takes its frame from."""
