"""Image work for Resell Studio: ingest, cut-out, attributes, ghost photos, marketplace crops and jobs."""
