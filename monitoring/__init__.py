"""Pipeline figures for the status page, the metrics endpoint and the alarm."""
