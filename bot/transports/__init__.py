"""Channel transports: each checks its provider's webhooks, turns them into ``InboundMessage``
and renders ``OutboundMessage`` its own way (``twilio`` for SMS and WhatsApp, ``telegram``), with
the webhook routes beside it (``twilio_routes``, ``telegram_routes``)."""
