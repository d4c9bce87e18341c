"""Serving: load a delivered model (any job's model archive, any variant) and answer with it —
the one runtime behind try-it, batch predictions and the comparison. Django-free."""
