"""The node: one process that hosts agents, their transports, the DHT, the ledger and the LLM.

`config` (with `tables`, its one error formatter) reads the TOML; `node` opens everything
(`open_node`); `api` is the local admin API (`admin_writes` its operator routes, `accounts`
its money views), `metrics` its Prometheus exposition; `llm` starts the configured engine;
`gateway` is the OpenAI-compatible gateway, `interop` the uAgents and A2A listener (`a2a`),
`ports` checks the listen addresses first; `static` holds the web view. Builds on
`marketplace.trade`. This file imports nothing: reading a config must not pay for libp2p.
"""
