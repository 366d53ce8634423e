"""Plans, quotas and the usage ledger live here (the billing issue)."""
