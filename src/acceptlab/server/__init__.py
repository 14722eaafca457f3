"""The book's server, read in this order: worker.py (wait, accept, converse, repeat), then
strategies.py (fifteen ways to wait, and what each makes the kernel do), then pool.py (N
workers on one socket, started in slot order, kept alive by a supervisor)."""
