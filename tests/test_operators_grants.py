"""A task outside its grant is refused before any work or payment, on real nodes.

Two `aaex node run` processes: a seller node with a forecaster, and a buyer node whose
operator buys with a data owner's grant for the sales history the task carries (`aaex grant
issue`). A use outside the grant's purpose, action or window is declined by the seller's
node with the reason in one line, before any agreement: neither node's books hold an
agreement, an escrow or a payment, and the seller's books record each refusal with the
purpose asked. A use inside the grant is bought and paid, and its result carries the
seller-signed provenance that `aaex provenance verify` accepts, and refuses once tampered
with. After the owner revokes the grant (`aaex grant revoke` through the buyer's node), the
same use is refused as revoked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marketplace.contracts.ledger import open_ledger
from tests.node_kit import Operators, aaex, running_node, two_operators
from tests.test_operators_declines import BUYER_TOML
from tests.test_operators_typed_tasks import SELLER_TOML

HISTORY = [10, 20, 30]


def _buy(ops: Operators, grant: Path, purpose: str, action: str = "read") -> list[str]:
    return ["market", "buy", "forecast.demand", "--config", str(ops.buyer_toml), "--agent",
            "shopper", "--task", str(ops.task), "--budget", "10", "--deadline", "20",
            "--grant", str(grant), "--use-purpose", purpose, "--use-action", action,
            "--data-field", "history"]


async def _accounts(capsys: pytest.CaptureFixture[str], toml: Path) -> list[dict[str, str]]:
    code, out, err = await aaex(capsys, "account", "show", "--config", str(toml), "--json")
    assert code == 0, err
    return [{k: a[k] for k in ("agent", "available", "held", "receivable", "payable")}
            for a in json.loads(out)]


async def test_a_use_outside_the_grant_is_refused_before_any_money_moves(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = two_operators(tmp_path, {"history": HISTORY}, "")
    ops.seller_toml.write_text(SELLER_TOML)
    data = tmp_path / "history.json"
    data.write_text(json.dumps(HISTORY))
    owner_key = tmp_path / "owner.key"
    assert (await aaex(capsys, "keys", "new", str(owner_key)))[0] == 0

    async with running_node(ops.seller_toml) as seller:
        ops.buyer_toml.write_text(BUYER_TOML.format(seed=seller.ready["p2p"][0]))
        _, out, _ = await aaex(capsys, "account", "show", "--config", str(ops.seller_toml),
                               "--json")
        forecaster = json.loads(out)[0]["address"]
        grants = {}
        for name, window in (("now", ["--from", "2020-01-01T00:00:00Z", "--days", "36500"]),
                             ("past", ["--from", "2020-01-01T00:00:00Z",
                                       "--until", "2020-01-02T00:00:00Z"])):
            grants[name] = tmp_path / f"grant-{name}.json"
            code, out, err = await aaex(
                capsys, "grant", "issue", "--key", str(owner_key), "--grantee", forecaster,
                "--dataset-id", "sales-2025", "--data", str(data), "--action", "read",
                "--purpose", "forecast.demand", *window, "--out", str(grants[name]))
            assert code == 0, err
        code, out, _ = await aaex(capsys, "grant", "export", str(grants["now"]))
        assert code == 0 and json.loads(out)["@type"] == "Agreement"

        async with running_node(ops.buyer_toml) as buyer:
            assert (await aaex(capsys, "account", "deposit", "--config", str(ops.buyer_toml),
                               "shopper", "25"))[0] == 0
            before = (await _accounts(capsys, ops.buyer_toml),
                      await _accounts(capsys, ops.seller_toml))
            refusals = {
                "outside purpose": _buy(ops, grants["now"], "training"),
                "outside action": _buy(ops, grants["now"], "forecast.demand", "delete"),
                "outside window": _buy(ops, grants["past"], "forecast.demand"),
            }
            for reason, argv in refusals.items():
                for _ in range(20):  # until the seller's ad reached the buyer's DHT
                    code, out, err = await aaex(capsys, *argv)
                    if "grant_refused" in out + err:
                        break
                assert code == 1, out + err
                assert f"declined by {forecaster}: grant_refused ({reason}: " in out, out
            # Nothing was agreed, held or paid on either side.
            assert (await _accounts(capsys, ops.buyer_toml),
                    await _accounts(capsys, ops.seller_toml)) == before
            assert not [e for e in seller.events if e.get("event") in
                        ("countersigned", "sale_task_started")]
            assert not [e for e in buyer.events if e.get("event") == "escrowed"]

            # Inside the grant: bought, paid, and the result carries verifiable provenance.
            code, out, err = await aaex(capsys, *_buy(ops, grants["now"], "forecast.demand"),
                                        "--json")
            assert code == 0, err
            done = json.loads(out)
            assert done["verdict"] == "met" and done["provenance_problems"] == []
            record = done["provenance"]["provenance"]
            assert record["seller"] == forecaster
            assert [i["role"] for i in record["inputs"]] == ["task", "data"]
            assert record["model"]["name"] == "tests.peers.seller_peer.ForecastSeller"
            bought = tmp_path / "bought.json"
            bought.write_text(out)
            code, out, err = await aaex(capsys, "provenance", "verify", str(bought), "--task",
                                        str(ops.task))
            assert code == 0 and out.startswith(f"valid: signed by seller {forecaster}"), err
            tampered = json.loads(bought.read_text())
            tampered["result"]["forecast"] = [99.0]
            (tmp_path / "tampered.json").write_text(json.dumps(tampered))
            code, _, err = await aaex(capsys, "provenance", "verify",
                                      str(tmp_path / "tampered.json"))
            assert code == 1 and err.startswith("aaex: provenance invalid: result: "), err
            forged = json.loads(bought.read_text())
            forged["provenance"]["provenance"]["code_version"] = "9.9.9"
            (tmp_path / "forged.json").write_text(json.dumps(forged))
            code, _, err = await aaex(capsys, "provenance", "verify",
                                      str(tmp_path / "forged.json"))
            assert code == 1 and "provenance invalid: signature: " in err, err

            # The owner revokes the grant; the seller's node refuses the next use.
            code, out, err = await aaex(
                capsys, "grant", "revoke", str(grants["now"]), "--key", str(owner_key),
                "--out", str(tmp_path / "revocation.json"), "--config", str(ops.buyer_toml),
                "--agent", "shopper")
            assert code == 0 and "keeps the revocation" in out, err
            code, out, err = await aaex(capsys, *_buy(ops, grants["now"], "forecast.demand"))
            assert code == 1 and f"declined by {forecaster}: grant_refused (revoked: " in out

    async with open_ledger(ops.books("seller")) as books:
        assert len(await books.agreements()) == 1  # the one inside the grant, nothing else
        events = [(e.actor, e.purpose) for e in await books.access_events()]
    async with open_ledger(ops.books("buyer")) as books:
        assert len(await books.agreements()) == 1
    used = [p for a, p in events if a == forecaster]
    refused = [p for a, p in events if a != forecaster]
    assert used == ["read for forecast.demand"]
    assert [p.split(": ")[0] for p in refused] == [
        "read for training refused", "delete for forecast.demand refused",
        "read for forecast.demand refused", "read for forecast.demand refused"]
    assert [p.split("refused: ")[1].split(":")[0] for p in refused] == [
        "outside purpose", "outside action", "outside window", "revoked"]
