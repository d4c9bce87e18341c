"""Billing (after Zulip's corporate/): plans and their limits, Stripe
subscriptions changed only by verified webhooks, and an exact ledger of
GPU-seconds exported to Stripe Billing Meters through an outbox."""
