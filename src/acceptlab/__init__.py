"""acceptlab: watch the kernel hand out TCP connections to workers that share one socket."""

__version__ = "0.1.0"
