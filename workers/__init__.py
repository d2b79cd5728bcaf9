"""RQ jobs that turn stored reports into summary rows, and the queue contract they share
with the web app and the sweeper (``queueing.contract``)."""
