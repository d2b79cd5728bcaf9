"""The queue contract shared by the pipeline stages: queue names, job ids, the serializer,
the job-function allowlist, and the event counters and job-duration histograms kept in
Redis. The web app's intake, the workers and monitoring all import it, so that none of
them needs to import another (see the import-linter contract in ``.importlinter``)."""
