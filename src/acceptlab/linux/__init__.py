"""What Linux lets a program see: accept-queue depth and context switches (kernel), other
processes' sockets and waits (procfs), the kernel's own account of wakeups (tracing), and
which strategies this machine can run (support)."""
