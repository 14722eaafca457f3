"""Reading a Run: the numbers a lesson talks about (analysis), the figures (plots), and
the wait queue replayed as a film.
"""
