"""Negotiation, agreements, SLA, ledger, reputation, delegation, the node and the CLI."""
