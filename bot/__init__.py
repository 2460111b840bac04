"""The running service: settings, CLI, the aiohttp app, transports, the outbox and the timers.

The composition root is ``bot.app``: ``build_runtime`` and ``create_app``.
"""
