"""Schedules, Vault change detection and webhooks: the only package importing apscheduler."""
