"""The book's server: the conversation, how a worker waits (the strategies), the worker
loop, its event log, and the pool with the supervisor that replaces dead workers.
Read worker.py first: it is the book's loop.
"""
