"""Seeing a run: figures with one colour per worker and each strategy's prediction (plots),
the wait queue replayed as a film (film), and the comparison make demo writes (report)."""
