"""GPS from Traccar: its REST client, its forwarded events' format and the webhook route."""
