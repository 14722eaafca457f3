"""The client side of an experiment: fire connections sequentially, in a closed loop or an
open one (load), hold each conversation without I/O (conversation), and a lean epoll engine
when one Python process must keep up with a server (lean)."""
