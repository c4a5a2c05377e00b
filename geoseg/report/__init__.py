"""Report stage: run manifests, summary tables, quicklook figures and HTML reports."""
