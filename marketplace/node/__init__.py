"""The node: one process that hosts agents, their transports, the DHT, the ledger and the LLM.

`config` reads the TOML; `node` opens everything (`open_node`); `api` is the local admin API,
`metrics` its Prometheus exposition; `llm` starts the configured engine. Builds on
`marketplace.trade`. This file imports nothing: reading a config must not pay for libp2p.
"""
