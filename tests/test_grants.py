"""Purpose-bound grants: signing, the ODRL export, each refusal reason, revocation, the desk."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aaex_agents.clock import ManualClock
from aaex_agents.errors import UsageError
from marketplace.contracts.errors import BadContractSignature, MalformedContract
from marketplace.contracts.grant import (
    Grant,
    SignedGrant,
    SignedRevocation,
    check_use,
    odrl_document,
)
from marketplace.contracts.ledger import Ledger, LedgerConfig, open_ledger
from marketplace.contracts.odrl import parse_policy
from marketplace.trade.errors import Refusal
from marketplace.trade.grants import (
    AUDITED_REFUSALS_PER_MINUTE,
    MAX_REVOCATIONS_PER_OWNER,
    DataUse,
    GrantDesk,
    data_hash,
    use_from_document,
)
from tests.market_kit import BUYER, OWNER, SELLER, STRANGER, flip_bit, identity

DATA_OWNER = identity("data-owner")
HISTORY = [12, 15, 11, 18]
START_MS = 1_800_000_000_000
DAY_MS = 86_400_000


def grant(**changes: object) -> SignedGrant:
    fields: dict[str, object] = {
        "owner": DATA_OWNER.address, "grantee": SELLER.address, "dataset_id": "sales-2025",
        "dataset_hash": data_hash(HISTORY), "actions": ("read",),
        "purposes": ("forecast.demand",), "not_before_ms": START_MS,
        "not_after_ms": START_MS + DAY_MS}
    fields.update(changes)
    return SignedGrant.issue(Grant.model_validate(fields), DATA_OWNER)


def use_of(signed: SignedGrant, **changes: object) -> dict[str, object]:
    asked: dict[str, object] = {"user": SELLER.address, "action": "read",
                                "purpose": "forecast.demand", "dataset_hash": data_hash(HISTORY),
                                "now_ms": START_MS + 1}
    asked.update(changes)
    return asked


def test_a_use_inside_the_grant_is_covered() -> None:
    signed = grant()
    assert check_use(signed, **use_of(signed)) is None  # type: ignore[arg-type]
    assert check_use(signed, **use_of(signed, now_ms=START_MS)) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("changes, reason", [
    ({"action": "delete"}, "outside action"),
    ({"action": "distribute"}, "outside action"),
    ({"purpose": "training"}, "outside purpose"),
    ({"now_ms": START_MS - 1}, "outside window"),
    ({"now_ms": START_MS + DAY_MS}, "outside window"),  # the end is exclusive (ODRL lt)
    ({"user": STRANGER.address}, "not the grantee"),
    ({"dataset_hash": data_hash([1, 2, 3])}, "dataset hash mismatch"),
])
def test_each_use_outside_the_grant_is_refused_with_its_reason(changes: dict[str, object],
                                                                reason: str) -> None:
    signed = grant()
    found = check_use(signed, **use_of(signed, **changes))  # type: ignore[arg-type]
    assert found is not None and found.startswith(reason), found
    assert "\n" not in found


def test_use_includes_read_and_passing_on_needs_transferable() -> None:
    broad = grant(actions=("use",), transferable=True)
    assert check_use(broad, **use_of(broad)) is None  # type: ignore[arg-type]
    assert check_use(broad, **use_of(broad, action="distribute")) is None  # type: ignore[arg-type]
    kept = grant(actions=("use",))  # ODRL's use includes distribute: prohibited explicitly
    assert check_use(kept, **use_of(kept)) is None  # type: ignore[arg-type]
    found = check_use(kept, **use_of(kept, action="distribute"))  # type: ignore[arg-type]
    assert found is not None and found.startswith("outside action"), found
    assert odrl_document(kept)["prohibition"][0]["action"] == "distribute"


def test_a_tampered_grant_and_a_stranger_signing_are_refused() -> None:
    signed = grant()
    with pytest.raises(BadContractSignature):
        SignedGrant.issue(signed.grant, STRANGER)
    forged = SignedGrant(grant=signed.grant.model_copy(update={"purposes": ("training",)}),
                         signature=signed.signature)
    reason = check_use(forged, **use_of(forged, purpose="training"))  # type: ignore[arg-type]
    assert reason is not None and reason.startswith("bad signature")
    with pytest.raises((MalformedContract, BadContractSignature)):
        SignedGrant.from_wire(flip_bit(signed.to_wire(), 200))
    assert SignedGrant.from_wire(signed.to_wire()) == signed
    assert SignedGrant.from_json(signed.model_dump_json()) == signed


def test_the_vocabulary_is_checked_when_a_grant_is_made() -> None:
    with pytest.raises(ValueError, match="actions"):
        grant(actions=("sell",))
    with pytest.raises(ValueError, match="purposes"):
        grant(purposes=("marketing stuff",))
    with pytest.raises(ValueError, match="not_after_ms"):
        grant(not_after_ms=START_MS)


def test_a_revocation_by_the_owner_ends_the_grant_and_a_strangers_does_not() -> None:
    signed = grant()
    revoked = SignedRevocation.revoke(signed, DATA_OWNER, START_MS + 10)
    assert revoked.revokes(signed)
    later = check_use(signed, **use_of(signed, now_ms=START_MS + 11),  # type: ignore[arg-type]
                      revocation=revoked)
    assert later is not None and later.startswith("revoked")
    assert check_use(signed, **use_of(signed, now_ms=START_MS + 9),  # type: ignore[arg-type]
                     revocation=revoked) is None
    with pytest.raises(BadContractSignature):
        SignedRevocation.revoke(signed, STRANGER, START_MS)
    forged = SignedRevocation(revocation=revoked.revocation, signature=bytes(64))
    assert not forged.revokes(signed)


def test_the_odrl_export_is_an_agreement_the_evaluator_reads() -> None:
    signed = grant(actions=("read", "derive"), purposes=("forecast.demand", "analytics"),
                   transferable=True)
    document = odrl_document(signed)
    assert document["@type"] == "Agreement"
    assert "http://www.w3.org/ns/odrl.jsonld" in document["@context"]
    actions = [p["action"] for p in document["permission"]]
    assert actions == ["read", "derive", "distribute"]
    first = document["permission"][0]
    assert first["assignee"].endswith(SELLER.address)
    assert first["assigner"].endswith(DATA_OWNER.address)
    assert [(c["leftOperand"], c["operator"]) for c in first["constraint"]] == [
        ("purpose", "isAnyOf"), ("dateTime", "gteq"), ("dateTime", "lt")]
    assert first["constraint"][1]["rightOperand"]["@value"] == "2027-01-15T08:00:00.000Z"
    policy = parse_policy(json.loads(json.dumps(document)))
    assert len(policy.rules) == 3


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with open_ledger(tmp_path / "ledger.db",
                           config=LedgerConfig(clock=ManualClock(), owner=OWNER)) as opened:
        yield opened


def data_use(signed: SignedGrant, **changes: object) -> DataUse:
    fields: dict[str, object] = {"grant": signed.to_wire(), "action": "read",
                                 "purpose": "forecast.demand", "field": "history"}
    fields.update(changes)
    return DataUse.model_validate(fields)


async def test_the_desk_refuses_records_the_refusal_and_keeps_revocations(
        tmp_path: Path, ledger: Ledger) -> None:
    clock = ManualClock(start=(START_MS + 1000) / 1000)
    path = tmp_path / "revocations.jsonl"
    desk = GrantDesk(path=path, ledger=ledger, clock=clock)
    signed = grant()
    task = {"history": HISTORY, "horizon": 3}
    await desk.check(data_use(signed), task, user=SELLER.address, buyer=BUYER.address)
    with pytest.raises(Refusal, match="outside purpose") as refused:
        await desk.check(data_use(signed, purpose="training"), task, user=SELLER.address,
                         buyer=BUYER.address)
    assert refused.value.reason == "grant_refused"
    with pytest.raises(Refusal, match="dataset hash mismatch"):
        await desk.check(data_use(signed), {"history": [1]}, user=SELLER.address,
                         buyer=BUYER.address)
    events = await ledger.access_events(actor=BUYER.address)
    assert [e.purpose.split(" refused: ")[1].split(":")[0] for e in events] == [
        "outside purpose", "dataset hash mismatch"]
    assert events[0].purpose.startswith("read for training refused")

    await desk.revoke(SignedRevocation.revoke(signed, DATA_OWNER, START_MS + 500))
    with pytest.raises(Refusal, match="revoked"):
        await desk.check(data_use(signed), task, user=SELLER.address, buyer=BUYER.address)
    reopened = GrantDesk(path=path, clock=clock)  # a restarted node still refuses it
    assert reopened.fault(data_use(signed), task, SELLER.address).startswith("revoked")


async def test_refusals_recorded_per_buyer_are_bounded(ledger: Ledger) -> None:
    desk = GrantDesk(ledger=ledger, clock=ManualClock(start=(START_MS + 1000) / 1000))
    signed = grant()
    for _ in range(AUDITED_REFUSALS_PER_MINUTE + 5):
        with pytest.raises(Refusal):
            await desk.check(data_use(signed, purpose="training"), {"history": HISTORY},
                             user=SELLER.address, buyer=STRANGER.address)
    await desk._audit_refusal(data_use(signed), BUYER.address, "outside window: x")
    assert len(await ledger.access_events(actor=STRANGER.address)) == \
        AUDITED_REFUSALS_PER_MINUTE
    assert len(await ledger.access_events(actor=BUYER.address)) == 1  # another buyer's share


async def test_revocations_are_checked_and_bounded_per_owner() -> None:
    desk = GrantDesk()
    bad = SignedRevocation.revoke(grant(), DATA_OWNER, START_MS)
    with pytest.raises(Refusal, match=r"not signed"):
        await desk.revoke(SignedRevocation(revocation=bad.revocation, signature=bytes(64)))
    for n in range(MAX_REVOCATIONS_PER_OWNER):
        await desk.revoke(SignedRevocation.revoke(grant(dataset_id=f"d{n}"), DATA_OWNER,
                                                  START_MS))
    with pytest.raises(Refusal) as full:
        await desk.revoke(SignedRevocation.revoke(grant(dataset_id="one-more"), DATA_OWNER,
                                                  START_MS))
    assert full.value.reason == "revocations_full"


def test_a_use_document_names_what_is_wrong() -> None:
    signed = grant()
    document = {"grant": json.loads(signed.model_dump_json()), "action": "read",
                "purpose": "forecast.demand"}
    assert use_from_document(document).signed() == signed
    broken = json.loads(signed.model_dump_json())
    broken["grant"]["purposes"] = ["training"]
    with pytest.raises(UsageError, match=r"use\.grant: .*signature"):
        use_from_document({**document, "grant": broken})
    with pytest.raises(UsageError, match=r"use\.action"):
        use_from_document({**document, "action": "Read it!"})


def test_the_cli_refuses_a_tampered_grant_file_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from marketplace.cli.main import main

    path = tmp_path / "grant.json"
    document = json.loads(grant().model_dump_json())
    path.write_text(json.dumps(document))
    assert main(["grant", "show", str(path)]) == 0
    assert "(signature valid)" in capsys.readouterr().out
    document["grant"]["transferable"] = True
    path.write_text(json.dumps(document))
    assert main(["grant", "export", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"aaex: {path}: the owner's signature on grant ") and \
        err.count("\n") == 1


async def test_refusals_recorded_from_all_buyers_are_bounded_per_minute(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    import marketplace.trade.grants as grants_module

    monkeypatch.setattr(grants_module, "AUDITED_REFUSALS_TOTAL_PER_MINUTE", 15)
    clock = ManualClock(start=(START_MS + 1000) / 1000)
    desk = GrantDesk(ledger=ledger, clock=clock)
    signed = grant()
    for n in range(4):  # four fresh keys, ten refused calls each
        for _ in range(10):
            await desk._audit_refusal(data_use(signed), identity(f"flood-{n}").address,
                                      "outside purpose: x")
    assert len(await ledger.access_events()) == 15
    clock.advance(60)
    await desk._audit_refusal(data_use(signed), BUYER.address, "outside purpose: x")
    assert len(await ledger.access_events()) == 16


def test_market_buy_says_whether_the_provenance_verified() -> None:
    import io

    from marketplace.cli.market import _show_event

    done = {"event": "done", "price": "1", "seller": SELLER.address, "result": {"f": 1},
            "provenance": {"provenance": {"model": {"name": "m", "file_hash": "ab" * 32},
                                          "code_version": "0.1.0+src.abababababab"}},
            "provenance_problems": []}
    out = io.StringIO()
    _show_event(done, out)
    assert "provenance: signed by the seller; model m (sha256 abababababababab…)" in \
        out.getvalue()
    out = io.StringIO()
    _show_event({**done, "provenance_problems": ["result: it hashes to 1, not 2"]}, out)
    assert "provenance: NOT VERIFIED: result: it hashes to 1, not 2" in out.getvalue()
