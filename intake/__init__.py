"""Accept fast, store, then queue: the submission pipeline shared by the web app and the
spool drainer, the spool itself, and the sweeper that re-queues what has no live job."""
