"""The `aaex` command line (`main`) and its terminal output (`console`); the only caller of
`asyncio.run` and the only place that configures logging."""
