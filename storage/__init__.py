"""Storage: Tortoise models, database set-up, migrations and the queries that need SQL care."""
