"""Billing: plans and prices, the usage ledger, the Stripe gateway, checkout,
webhooks and invoices (after Zulip's `corporate/`). A top-level app, beside
platform/, so the money code has its own boundary."""
