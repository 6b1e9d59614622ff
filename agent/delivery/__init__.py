"""Delivery: sends what the outbox holds to the webhooks over HTTP, in order per alarm
occurrence, at least once, with retries and backoff; the format says what an answer means."""
