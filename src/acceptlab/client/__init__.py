"""The client side: fire connections at a server and record each one; the client's
conversation without I/O; a lean epoll engine for heavy loads.
"""
