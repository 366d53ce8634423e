"""The bottom layer every app may use: errors, the Redis client, log context, metric helpers, the URL guard.

It imports no app of this project (``lint-imports`` enforces it), so ``accounts``, ``billing``, ``jobs`` and
the site package can all depend on it without a cycle. Modules here may read ``django.conf.settings`` but
never a model.
"""
