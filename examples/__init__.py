"""Examples, installed as the `aaex_examples` package.

The folder is `examples/` in the repository; it is installed under another name because
libp2p already installs a top-level `examples` package. `aaex demo supply-chain` runs
`aaex_examples.supply_chain`.
"""
