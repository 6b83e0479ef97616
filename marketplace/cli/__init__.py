"""The `aaex` command line (`main`) and its terminal output (`console`).

The only caller of `asyncio.run` and the only place that configures logging.
"""
