"""The reporter: a node sends each partner the entries about it, and they arrive proven.

Two runtimes over the in-memory network, each with its own real ledger: the user's agent
records uses of the owner agent's data, `report_audit` sends them, the owner node's market
desk judges them. A partner that holds a later head than the reporter believes gets the
proof from its own size after one ``need_proof``; entries of an agent the node does not host
are skipped, not sent under another agent's name.
"""

from __future__ import annotations

from aaex_agents import Agent, MemoryNetwork, open_runtime
from aaex_agents.testing import ManualClock
from marketplace.contracts.ledger import LedgerConfig, open_ledger
from marketplace.trade.audit import report_audit
from marketplace.trade.desk import MarketDesk
from tests.market_kit import OWNER, STRANGER, identity


async def test_entries_reach_the_owner_proven_and_a_stale_size_is_corrected() -> None:
    clock = ManualClock()
    user, owner = Agent(identity("user")), Agent(identity("owner"))
    async with open_ledger(None, config=LedgerConfig(clock=clock, owner=OWNER)) as mine, \
            open_ledger(None, config=LedgerConfig(clock=clock, owner=STRANGER)) as theirs:
        network = MemoryNetwork()
        async with open_runtime(owner, transports=[network.transport("owner")], clock=clock,
                                shared=MarketDesk({owner.address: owner}, theirs)) as owned, \
                open_runtime(user, transports=[network.transport("user")],
                             clock=clock) as using:
            using.directory.add(owner.address, *owned.endpoints)  # type: ignore[attr-defined]
            silenced: set[str] = set()

            async def report() -> int:
                return await report_audit(mine, {user.address: user}, using.context,
                                          silenced=silenced)

            for n in range(2):
                await mine.record_access(user.address, f"sales/{n}", "forecast",
                                         owner=owner.address)
            await mine.record_access(user.address, "own/notes", "planning")  # nobody's
            assert await report() == 1
            assert await report() == 0  # nothing new
            [kept] = await theirs.audit_partners()
            assert (kept.head.log, kept.head.size, kept.status) == (OWNER.address, 3, "ok")

            # The reporter's note of what the owner took is behind (say, a restored file).
            await mine.audit_reported(owner.address, 2, 1)
            await mine.record_access(user.address, "sales/2", "forecast", owner=owner.address)
            assert await report() == 1  # need_proof from 3, then the proof from 3
            [kept] = await theirs.audit_partners()
            assert (kept.head.size, kept.status) == (4, "ok")
            assert [e.dataset for _, _, e, _ in await theirs.audit_received()] == [
                "sales/2", "sales/1", "sales/0"]

            stranger = identity("not hosted here").address
            await mine.record_access(stranger, "sales/3", "forecast", owner=owner.address)
            await mine.record_access(user.address, "sales/4", "forecast", owner=owner.address)
            assert await report() == 0  # the stranger's entry is skipped...
            assert await report() == 1  # ...and ours goes on the next pass
            assert [e.agent for _, _, e, _ in await theirs.audit_received(limit=1)] == [
                user.address]
            assert silenced == set()
