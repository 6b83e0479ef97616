"""/metrics of a real node, written by prometheus_client: names, types, escaped label values."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from marketplace.node.config import parse_config
from marketplace.node.node import open_node

NODE = {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []}


async def test_metrics_are_typed_and_label_values_are_escaped(tmp_path: Path) -> None:
    odd = 'say "hi"\\ to\nyou'
    async with open_node(parse_config({"node": NODE}, base=tmp_path)) as node:
        # Fault injection: no peer can make the runtime count such a reason today, but a label
        # value must never break the exposition (a quote would end it, a newline split it).
        node.runtime.metrics.rejected[odd] += 2
        async with aiohttp.ClientSession() as http, \
                http.get(node.admin_url + "/metrics") as response:
            assert response.status == 200
            assert response.content_type == "text/plain"
            exposition = await response.text()
    assert 'aaex_messages_rejected_total{reason="say \\"hi\\"\\\\ to\\nyou"} 2.0' in exposition
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    [rejected] = families["aaex_messages_rejected"].samples
    assert rejected.labels == {"reason": odd} and rejected.value == 2
    assert families["aaex_agreements"].type == "counter"  # the ledger's, read at scrape time
    assert families["aaex_agreements"].samples[0].value == 0
    assert families["aaex_uptime_seconds"].type == "gauge"
    assert "aaex_llm_requests" not in families and "aaex_dht_lookups" not in families
