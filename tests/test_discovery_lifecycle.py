"""Discovery's lifecycle in one process: join, advertise, refresh, withdraw, route by address."""

from __future__ import annotations

import pytest

from aaex_agents import Agent, Context, Identity, Message, UsageError, handler, open_runtime
from aaex_agents.testing import ManualClock
from aaex_agents.transport.http import HttpTransport
from aaex_agents.transport.libp2p import Libp2pTransport, open_libp2p_host
from discovery.advertiser import Advertiser, Listing, open_advertiser
from discovery.dht import DiscoveryConfig, open_discovery
from discovery.directory import LOOK_AGAIN_EVERY_S, DhtDirectory
from discovery.query import Query
from discovery.records import PriceModel, SlaOffer
from tests.market_kit import cr


class Hello(Message, type="test_discovery.hello/1"):
    name: str


class Welcome(Message, type="test_discovery.welcome/1"):
    greeting: str


class Greeter(Agent):
    @handler
    async def on_hello(self, ctx: Context, msg: Hello) -> Welcome:
        return Welcome(greeting=f"hello {msg.name}")


OFFER = Listing(capability="greet.people", price=PriceModel(amount=cr(0.5)),
              sla=SlaOffer(p50_ms=5, p95_ms=10, deadline_s=5, availability=0.999),
              attributes={"language": "en"})


async def test_advertise_find_route_and_withdraw_on_clean_shutdown() -> None:
    config = DiscoveryConfig(shards=2, cache_ttl=0.001)
    async with open_libp2p_host() as seed_host, open_libp2p_host() as seller_host, \
            open_discovery(seed_host, config=config) as buyer_side, \
            open_discovery(seller_host, seeds=[seed_host.addrs[0]], config=config) as seller_side:
        assert seller_side.node.dht is not None
        assert seller_side.node.dht.get_routing_table_size() >= 1
        assert await seller_side.refresh_routing_table() >= 1
        greeter = Greeter()
        async with open_runtime(greeter, transports=[Libp2pTransport(seller_host)]), \
                open_advertiser(seller_side, greeter.identity, [OFFER],
                                refresh_period=60) as advertiser:
            assert advertiser.acknowledgements["greet.people"] >= 1
            found = await buyer_side.lookup(Query("greet.people"))
            assert [ad.address for ad in found] == [greeter.address]
            assert found[0].attributes == {"language": "en"}

            caller = Agent(Identity.generate())
            async with open_runtime(caller, transports=[Libp2pTransport(seed_host)],
                                    directory=DhtDirectory(buyer_side)) as runtime:
                reply = await runtime.context(caller).ask(greeter.address, Hello(name="ada"),
                                                          reply_type=Welcome, timeout=10)
                assert reply.greeting == "hello ada"
        # leaving the advertiser published signed tombstones
        assert await buyer_side.lookup(Query("greet.people")) == []


async def test_an_agent_that_moved_is_reached_through_its_record_not_the_cached_one() -> None:
    """A restarted node serves its agents on new endpoints and re-publishes their records.
    A caller that cached the old record finds every endpoint dead: it looks the record up
    again, past its cache, and reaches the new ones (before, it failed until the cached
    record expired)."""
    config = DiscoveryConfig(shards=2)
    greeter, caller = Greeter(), Agent(Identity.generate())
    async with open_libp2p_host() as seed_host, open_libp2p_host() as seller_host, \
            open_discovery(seed_host, config=config) as buyer_side, \
            open_discovery(seller_host, seeds=[seed_host.addrs[0]], config=config) as seller_side, \
            open_runtime(greeter, transports=[HttpTransport()]) as served, \
            open_runtime(caller, transports=[HttpTransport()],
                         directory=DhtDirectory(buyer_side)) as runtime:
        gone = "http://127.0.0.1:9/aaex/v1/envelope"  # where the agent was before a restart
        for endpoints in ([gone], served.endpoints):
            await Advertiser(seller_side, greeter.identity, [], refresh_period=60,
                             http_endpoints=endpoints).publish()
            if endpoints == [gone]:
                assert (await runtime.directory.resolve(greeter.address))[0] == gone
        reply = await runtime.context(caller).ask(greeter.address, Hello(name="ada"),
                                                  reply_type=Welcome, timeout=10)
    assert reply.greeting == "hello ada"


async def test_an_address_is_looked_up_past_the_cache_at_most_once_a_period() -> None:
    """A peer that is simply down makes every request to it fail: each would walk the DHT
    for its record again. One walk per address per `LOOK_AGAIN_EVERY_S` is enough."""
    clock = ManualClock()
    config = DiscoveryConfig(shards=2)
    greeter = Identity.generate()
    async with open_libp2p_host() as seed_host, open_libp2p_host() as seller_host, \
            open_discovery(seed_host, config=config, clock=clock) as buyer_side, \
            open_discovery(seller_host, seeds=[seed_host.addrs[0]], config=config,
                           clock=clock) as seller_side:
        directory = DhtDirectory(buyer_side)

        async def move_to(endpoint: str) -> None:
            clock.advance(0.01)  # a later publication: a higher sequence number
            await Advertiser(seller_side, greeter, [], refresh_period=60, clock=clock,
                             http_endpoints=[endpoint]).publish()

        await move_to("http://127.0.0.1:1/aaex/v1/envelope")
        await directory.resolve(greeter.address)
        found = []
        for step in range(3):
            await move_to(f"http://127.0.0.1:{2 + step}/aaex/v1/envelope")
            found.append(list(await directory.resolve_again(greeter.address))[:1])
            clock.advance(LOOK_AGAIN_EVERY_S / 2 + 0.01 * step)
    assert found == [["http://127.0.0.1:2/aaex/v1/envelope"], [],
                     ["http://127.0.0.1:4/aaex/v1/envelope"]]


async def test_lookup_results_are_cached_until_they_expire() -> None:
    async with open_libp2p_host() as host, open_discovery(
            host, config=DiscoveryConfig(shards=2, cache_ttl=60)) as discovery:
        seller = Identity.generate()
        async with open_advertiser(discovery, seller, [OFFER], refresh_period=60):
            first = await discovery.lookup(Query("greet.people"))
            walks = discovery.stats.walks
            again = await discovery.lookup(Query("greet.people", max_price=cr(1.0)))
            assert again == first and discovery.stats.walks == walks
            assert discovery.stats.cache_hits == 1


async def test_a_refresh_period_index_nodes_would_refuse_is_refused_at_once() -> None:
    async with open_libp2p_host() as host, open_discovery(host) as discovery:
        with pytest.raises(UsageError, match="use at most 900 s"):
            Advertiser(discovery, Identity.generate(), [OFFER], refresh_period=3600)
        Advertiser(discovery, Identity.generate(), [OFFER], refresh_period=900)


async def test_a_lookup_that_reached_too_few_index_nodes_is_not_cached() -> None:
    """Index nodes that did not answer (overloaded, restarting) make a result partial.

    A partial result was cached as complete: for `cache_ttl` the buyer saw no sellers even
    once the index nodes answered again.
    """
    config = DiscoveryConfig(shards=1, cache_ttl=60)
    async with open_libp2p_host() as seed_host, open_libp2p_host() as seller_host, \
            open_libp2p_host() as buyer_host, \
            open_discovery(seed_host, config=config) as seed, \
            open_discovery(seller_host, seeds=seed_host.addrs, config=config) as sold_from:
        advertiser = Advertiser(sold_from, Identity.generate(), [OFFER], refresh_period=60)
        await advertiser.publish()  # once, with no timer: it reaches the seed and itself
        assert advertiser.acknowledgements[OFFER.capability] == 2
        async with open_discovery(buyer_host, seeds=seed_host.addrs, config=config) as buyer:
            for index_node in (seed, sold_from):  # neither serves its index for a while
                await index_node.aclose()
            assert await buyer.lookup(Query("greet.people")) == []
            for index_node in (seed, sold_from):
                await index_node.node.bridge.call(index_node._t_install)
            found = await buyer.lookup(Query("greet.people"))
            assert [ad.address for ad in found] == [advertiser.address]
