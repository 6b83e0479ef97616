"""The OpenAI-compatible gateway: the official `openai` client buys completions on the market.

Two `aaex node run` processes: one sells ``llm.chat`` with the shipped SmolLM2, the other
serves ``[gateway]`` and buys as its agent; both ledgers show the per-token settlement.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from marketplace.node.config import ConfigError, parse_config
from tests.node_kit import running_node
from tests.test_operators import aaex, post

pytest.importorskip("llama_cpp", reason="the CPU model needs the cpu extra")
openai = pytest.importorskip("openai", reason="the gateway test uses the official client")

MODEL = "SmolLM2-135M-Instruct"

SELLER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
drain_timeout = 2

[llm]
backend = "llamacpp"
n_ctx = 512
n_threads = 1

[[agents]]
name = "llm"
class = "marketplace:LlmSeller"
settings = { price_in_per_1k = 0.01, price_out_per_1k = 0.02, max_tokens_cap = 16 }
"""

BUYER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
seeds = ["{seed}"]
drain_timeout = 2

[market]
negotiation_window = 0.5

[gateway]
listen = "127.0.0.1:0"
agent = "shopper"
budget = 0.5

[[agents]]
name = "shopper"
class = "marketplace:Buyer"
"""

MESSAGES = [{"role": "user", "content": "Say hello."}]


async def test_the_openai_client_buys_completions_plain_and_streamed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seller_dir, buyer_dir = tmp_path / "seller", tmp_path / "buyer"
    seller_dir.mkdir()
    buyer_dir.mkdir()
    seller_toml, buyer_toml = seller_dir / "node.toml", buyer_dir / "node.toml"
    seller_toml.write_text(SELLER_TOML)
    async with running_node(seller_toml) as seller:
        buyer_toml.write_text(BUYER_TOML.format(seed=seller.ready["p2p"][0]))
        async with running_node(buyer_toml) as buyer:
            buyer_ready = buyer.ready
            token = (buyer_dir / "data" / "admin.token").read_text().strip()
            status, _ = await post(buyer_ready["admin"] + "/account/deposit",
                                   {"agent": "shopper", "amount": 5}, token)
            assert status == 200
            base = buyer_ready["gateway"] + "/v1"
            client = openai.AsyncOpenAI(base_url=base, api_key=token, max_retries=0)

            with pytest.raises(openai.AuthenticationError):
                await openai.AsyncOpenAI(base_url=base, api_key="nope", max_retries=0
                                         ).models.list()
            models = [m.id async for m in client.models.list()]
            assert "aaex:any" in models and MODEL in models

            plain = await client.chat.completions.create(model=MODEL, messages=MESSAGES,
                                                         max_tokens=8)
            assert plain.choices[0].message.content
            assert plain.usage is not None and 0 < plain.usage.completion_tokens <= 8
            assert plain.usage.prompt_tokens > 0
            bought = plain.model_extra["aaex"]  # type: ignore[index]
            assert bought["source"] == "market"
            assert Decimal(bought["paid"]) > 0 and Decimal(bought["refunded"]) > 0

            pieces, usage = [], None
            stream = await client.chat.completions.create(
                model="aaex:any", messages=MESSAGES, max_tokens=8, stream=True,
                stream_options={"include_usage": True})
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                if chunk.usage is not None:
                    usage = chunk.usage
            assert "".join(pieces) and usage is not None and usage.completion_tokens > 0

            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, max_tokens=8,
                    extra_headers={"X-AAEX-Budget": "0.000001"})
            assert caught.value.status_code == 402 and "over_budget" in caught.value.message
            with pytest.raises(openai.NotFoundError):  # no seller and no local model
                await client.chat.completions.create(model="Llama-9-Nonexistent",
                                                     messages=MESSAGES, max_tokens=8)

            # From the terminal: a per-token purchase prints what was held (the cap), paid
            # (the tokens used) and refunded, not the cap as if it were the price.
            task = tmp_path / "chat.json"
            task.write_text(json.dumps({"messages": MESSAGES, "max_tokens": 8}))
            code, out, err = await aaex(capsys, "market", "buy", "llm.chat", "--config",
                                        str(buyer_toml), "--agent", "shopper", "--task",
                                        str(task), "--budget", "0.5", "--deadline", "60")
            assert code == 0, out + err
            done = next(line for line in out.splitlines() if line.startswith("done: "))
            held, paid_now, refunded = (Decimal(x) for x in re.findall(
                r"held (\S+), paid (\S+), refunded (\S+) credits", done)[0])
            assert 0 < paid_now < held and paid_now + refunded == held, done

            _, out, _ = await aaex(capsys, "account", "statement", "--config",
                                   str(buyer_toml), "--with", bought["seller"], "--json")
            ours = json.loads(out)
            _, out, _ = await aaex(capsys, "account", "show", "--config", str(buyer_toml),
                                   "--json")
            [shopper] = json.loads(out)
            _, out, _ = await aaex(capsys, "account", "statement", "--config",
                                   str(seller_toml), "--with", shopper["address"], "--json")
            theirs = json.loads(out)
    # Three per-token sales, settled for the tokens used, the same on both books.
    assert len(ours["lines"]) == 3 and ours["lines"] == theirs["lines"]
    assert {line["verdict"] for line in ours["lines"]} == {"met"}
    paid = sum(Decimal(line["amount"]) for line in ours["lines"])
    assert Decimal(bought["paid"]) in {Decimal(line["amount"]) for line in ours["lines"]}
    assert all(Decimal(line["amount"]) < Decimal(line["price"]) for line in ours["lines"])
    assert Decimal(shopper["available"]) == 5 - paid and Decimal(shopper["held"]) == 0


@pytest.mark.parametrize(("table", "message"), [
    ({"listen": "nowhere"}, "gateway.listen = 'nowhere'"),
    ({"listen": "127.0.0.1:0"}, "gateway.agent: name the hosted agent"),
    ({"listen": "127.0.0.1:0", "agent": "ghost"}, "gateway.agent = 'ghost'"),
    ({"listen": "127.0.0.1:0", "agent": "shopper", "budget": -1}, "gateway.budget"),
    ({"port": 1}, "gateway.port: unknown key"),
])
def test_a_bad_gateway_section_is_one_line_naming_the_field(
        tmp_path: Path, table: dict[str, object], message: str) -> None:
    document = {"gateway": table,
                "agents": [{"name": "shopper", "class": "marketplace:Buyer"}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(document, base=tmp_path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
