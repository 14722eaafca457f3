"""What Linux lets a program see of its own and other servers' sockets: accept-queue
depth, context switches, /proc, tracefs, network namespaces, and which strategies this
machine supports.
"""
