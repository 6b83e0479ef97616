"""The validator agent: buys probes like any buyer, scores them, and votes with its stake.

    [[agents]]
    name = "validator"
    class = "marketplace:Validator"
    settings = { capabilities = ["forecast.demand"], sellers = ["aaex1..."], stake = 10 }

Each epoch, for every capability it validates, a `Validator`:

1. buys `probes_per_epoch` probe tasks from every registered seller through the market
   (`Delegator` with a finder that names only that seller: it negotiates, escrows, settles
   and leaves a signed receipt as any buyer does, so a probe looks like a customer);
2. scores each result from data only it keeps (`probes`), scales each seller's mean by its
   receipt reputation (the settled, double-signed receipts of its own probes and those it is
   `shown`), keeps a moving average, and turns it into a u16 weights row
   (``65535 * average ** sharpness``);
3. commits the row (`Board.commit_weights`, with 32 random bytes of salt) inside the commit
   window and reveals it inside the reveal window;
4. once the reveal window has closed, reads every counted reveal and its validator's stake
   from the board, runs `yuma_epoch`, attests the hash of the outputs and records the
   standing in its `ConsensusBook` (which the market's awards read).

The board is a `Board` (one account's handle, shaped as the chain client is); the
validator's account on it is `board.address`.

Time is the injected clock's; each phase waits with a deadline; the loop is one task owned
by the agent and cancelled on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aaex_agents import Agent, Context
from aaex_agents.errors import AaexError, UsageError
from aaex_agents.money import Credits

from ..consensus import ONE, EpochResult, YumaParams, yuma_epoch
from ..consensus.board import Board, ConsensusBook, EpochTimes, Phase
from ..consensus.fixed import U16_MAX
from ..contracts.agreement import SignedAgreement
from ..contracts.receipt import SignedReceipt
from ..contracts.reputation import ReputationBook
from .delegation import Delegator
from .errors import DelegationFailed
from .policy import Wallet
from .probes import ChatProbe, ForecastProbe, Made, Probe
from .route_probe import RouteProbe

logger = logging.getLogger(__name__)

PROBE_BUDGET = Credits(1_000_000)
"""The most one probe may cost by default: 1 credit."""
PROBE_WINDOW_S = 3.0
"""Seconds a probe's call for proposals stays open: a customer's usual window, so a probe
looks like one, and a busy seller still answers in time (a probe it misses scores 0)."""
RETRY_S = 5.0
"""Seconds before a validator asks an unreachable board again."""
PROBES: dict[str, Probe] = {"forecast.demand": ForecastProbe(), "llm.chat": ChatProbe(),
                            "route.vrp": RouteProbe()}
"""The probe each capability is validated with, by default (`probes` and `route_probe`)."""
KEPT_SCORES = 8
"""Epochs of probe scores a validator keeps per capability (for its status)."""


@dataclass
class Kept:
    """What one validator keeps per capability between epochs."""

    average: dict[str, float] = field(default_factory=dict)
    """Seller -> moving average of its probe scores."""
    bonds: list[list[int]] = field(default_factory=list)
    validators: tuple[str, ...] = ()
    sellers: tuple[str, ...] = ()


class Validator(Agent):
    """Probes sellers through the market and votes weights on the board each epoch."""

    def __init__(self, *args: Any, board: Board | None = None, times: EpochTimes | None = None,
                 capabilities: Sequence[str] = ("forecast.demand",),
                 probes: Mapping[str, Probe] | None = None, probes_per_epoch: int = 3,
                 budget: Credits | str | float = PROBE_BUDGET, smoothing: float = 0.5,
                 sharpness: float = 8.0, params: YumaParams | None = None,
                 epoch_seconds: float = 600.0, commit_seconds: float = 240.0,
                 reveal_seconds: float = 120.0, stake: float | str = 1.0,
                 probe_latency_ms: float = 30_000,
                 sellers: Sequence[str] = (),
                 book: ConsensusBook | None = None, books: Any = None,
                 secret: bytes | None = None, **kwargs: Any) -> None:
        """A validator; from a node's TOML, everything but `board`, `book` and `books`.

        Without `board`, the node binds one (`bind`): until the chain client is wired in,
        a board on the node shared by the validators it hosts, where each stakes `stake`
        credits and `sellers` (market addresses) are registered for its capabilities.
        `times` defaults to epochs of `epoch_seconds` from the Unix epoch, so validators on
        different nodes agree on them.
        """
        super().__init__(*args, **kwargs)
        times = times or EpochTimes(length=epoch_seconds, commit=commit_seconds,
                                    reveal=reveal_seconds)
        if not isinstance(budget, Credits):
            budget = Credits.parse(budget, "budget")
        self.stake = Credits.parse(stake, "stake", allow_zero=True)
        self.sellers = list(sellers)
        known = {**PROBES, **(probes or {})}
        missing = [c for c in capabilities if c not in known]
        if missing:
            raise UsageError(f"Validator: no probe for {missing}; known: {sorted(known)}")
        if probes_per_epoch < 1 or not 0 < smoothing <= 1 or sharpness <= 0:
            raise UsageError("Validator: probes_per_epoch >= 1, 0 < smoothing <= 1 and "
                             "sharpness > 0")
        self.board, self.times, self.params = board, times, params or YumaParams()
        self.probes = {c: known[c] for c in capabilities}
        self.per_epoch, self.budget = probes_per_epoch, budget
        self.probe_latency_ms = probe_latency_ms
        """The slowest delivery a probe accepts: set it to what the capability's customers
        accept, or a seller that promises slower is never probed, and never earns."""
        self.smoothing, self.sharpness = smoothing, sharpness
        self.book = book or ConsensusBook()
        self.kept: dict[str, Kept] = {c: Kept() for c in capabilities}
        self.scores: dict[tuple[str, int], dict[str, list[float]]] = {}
        """(capability, epoch) -> seller -> the probe scores of that epoch (for status)."""
        self.receipts = ReputationBook()
        """Verified receipts: of this validator's probes, and those it was `shown`."""
        self._books = books
        self._secret = secret or secrets.token_bytes(32)
        self._made = 0
        self._loop: asyncio.Task[None] | None = None
        self.results: dict[str, EpochResult] = {}
        """Per capability, the last epoch's full result (bonds, dividends, ...)."""
        self.epochs: dict[tuple[str, int], dict[str, Any]] = {}
        """(capability, epoch) -> what this validator computed and attested, as JSON: the
        sellers (market addresses), the validators (board accounts) and every one's revealed
        weights, consensus, incentive, dividends (fractions) and whether it had the emission
        minted (the last `KEPT_SCORES` epochs of each capability)."""
        self.last_epoch: int | None = None
        """The last epoch whose consensus this validator computed."""

    @property
    def on_board(self) -> Board:
        """The board; `UsageError` until one is given or bound."""
        if self.board is None:
            raise UsageError(f"validator {self.name}: no board; give board= or bind one")
        return self.board

    def bind(self, board: Board, book: ConsensusBook, books: Any = None) -> None:
        """Give a validator built from settings its board, consensus book and books.

        The node passes its market's `ConsensusBook` and its ledger, where the probes
        escrow and settle as any purchase does.
        """
        self.board, self.book = board, book
        if books is not None:
            self._books = books

    def shown(self, pairs: Iterable[tuple[SignedAgreement, SignedReceipt]]) -> int:
        """Read settled, double-signed receipts (e.g. another node's `settled_receipts`).

        Only pairs whose agreement both parties signed and whose receipt the buyer signed
        count; each seller's share of met receipts (median over raters) scales its probe
        score. Returns how many receipts were new.

        Raises:
            BadContractSignature, ReceiptMismatch: a pair does not verify (pairs before it
                were read).
        """
        return self.receipts.add_settled(pairs)

    async def on_start(self, ctx: Context) -> None:
        """Start the epoch loop, owned by this agent (not without a board)."""
        if self.board is None:
            logger.warning("validator %s has no board: nothing to vote on", self.name)
            return
        self._loop = asyncio.create_task(self.serve_epochs(ctx), name=f"validator {self.address}")

    async def on_stop(self, ctx: Context) -> None:
        """Cancel the epoch loop and wait for it to end."""
        await self.stop_epochs()

    async def stop_epochs(self) -> None:
        """Stop taking part in epochs (a probe in flight is dropped: recovery settles it)."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    async def serve_epochs(self, ctx: Context) -> None:
        """Run epochs for ever, each from the epoch the board is in when the last ended.

        A failed epoch is skipped; a board that does not answer is asked again in `RETRY_S`.
        """
        board = self.on_board
        while True:
            try:
                epoch = (await board.moment()).epoch
            except (AaexError, OSError) as exc:
                await self._board_silent(ctx, exc)
                continue
            try:
                await self.run_epoch(ctx, epoch)
            except (AaexError, OSError) as exc:  # a board or model failure skips one epoch
                logger.warning("validator %s: epoch %d skipped: %s", self.address, epoch, exc)
            except Exception:  # a bug skips the epoch too, and is logged: the loop goes on
                logger.exception("validator %s: epoch %d failed", self.address, epoch)
            try:
                await board.wait_for(ctx.clock, epoch + 1, Phase.COMMIT)
            except (AaexError, OSError) as exc:
                await self._board_silent(ctx, exc)

    async def _board_silent(self, ctx: Context, exc: BaseException) -> None:
        logger.warning("validator %s: the board does not answer (%s); asking again in %.0f s",
                       self.address, exc, RETRY_S)
        await ctx.clock.sleep(RETRY_S)

    async def run_epoch(self, ctx: Context, epoch: int) -> None:
        """Probe, commit, reveal, compute and attest one epoch, each in the board's window."""
        board = self.on_board
        rows: dict[str, tuple[dict[str, int], bytes]] = {}
        for capability in self.probes:
            sellers = await board.sellers(capability)  # board account -> market address
            moment = await board.moment()
            remaining = moment.closes_in if (moment.epoch, moment.phase) == (
                epoch, Phase.COMMIT) else 0.0
            if not sellers or remaining <= 0:
                continue
            try:
                async with asyncio.timeout(remaining):
                    scores = await self.probe_all(ctx, capability, epoch,
                                                  sorted(set(sellers.values())))
            except TimeoutError:
                logger.warning("validator: probing %s ran past the commit window", capability)
                continue
            rows[capability] = await self.commit_scores(capability, epoch, sellers, scores)
        await board.wait_for(ctx.clock, epoch, Phase.REVEAL)
        for capability, (weights, salt) in rows.items():
            await board.reveal_weights(capability, epoch, weights, salt)
        await board.wait_for(ctx.clock, epoch, Phase.ATTEST)
        computed = {c: await self.compute(c, epoch) for c in self.probes}
        self.last_epoch = epoch
        for capability, done in computed.items():
            if done is not None and await board.pay(ctx.clock, capability, epoch, *done):
                self.epochs[(capability, epoch)]["minted_by_me"] = True

    async def commit_scores(self, capability: str, epoch: int, sellers: Mapping[str, str],
                            scores: Mapping[str, Sequence[float]]
                            ) -> tuple[dict[str, int], bytes]:
        """Commit the weights of `scores` (by market address) for `sellers`.

        `sellers` maps board accounts to market addresses. Returns the weights by account
        and the salt, which the reveal needs.
        """
        accounts = sorted(sellers)
        row = self.weights_row(capability, [sellers[a] for a in accounts], scores)
        weights, salt = dict(zip(accounts, row, strict=True)), secrets.token_bytes(32)
        await self.on_board.commit_weights(capability, epoch, weights, salt)
        return weights, salt

    async def probe_all(self, ctx: Context, capability: str, epoch: int,
                        sellers: Sequence[str]) -> dict[str, list[float]]:
        """Every seller's probe scores this epoch (0 for a probe it did not deliver)."""
        got = await asyncio.gather(*(self.probe_seller(ctx, capability, s) for s in sellers))
        scores = dict(zip(sellers, got, strict=True))
        self.scores[(capability, epoch)] = scores
        for old in sorted(self.scores, key=lambda key: key[1])[:-KEPT_SCORES * len(self.probes)]:
            del self.scores[old]
        return scores

    async def probe_seller(self, ctx: Context, capability: str, seller: str) -> list[float]:
        """Buy and score this epoch's probes from `seller`, one after the other."""
        probe = self.probes[capability]
        out: list[float] = []
        for _ in range(self.per_epoch):
            self._made += 1
            made = probe.make(self._secret + self._made.to_bytes(8, "big"))
            out.append(await self._buy_and_score(ctx, probe, made, seller))
        return out

    async def _buy_and_score(self, ctx: Context, probe: Probe, made: Made, seller: str) -> float:
        async def only(capability: str, where: str | None) -> list[str]:
            return [seller]

        delegator = Delegator(self.identity, find=only, books=self._books,
                              reputation=self.receipts,
                              wallet=Wallet(budget=self.budget, per_seller=self.budget,
                                            per_task=self.budget),
                              negotiation_window=PROBE_WINDOW_S)
        try:
            done = await delegator.delegate(ctx, probe.capability, made.task,
                                            budget=self.budget, deadline=60, top_k=1,
                                            max_latency_ms=self.probe_latency_ms)
        except DelegationFailed as exc:
            logger.info("validator: probe of %s not delivered: %s", seller, exc)
            return 0.0
        return await probe.score(ctx, made, done.result)

    def weights_row(self, capability: str, sellers: Sequence[str],
                    scores: Mapping[str, Sequence[float]]) -> tuple[int, ...]:
        """The u16 weights: each seller's moving-average score, sharpened by a power."""
        average = self.kept[capability].average
        row = []
        for seller in sellers:
            got = scores.get(seller, [])
            mean = sum(got) / len(got) if got else 0.0
            rated = self.receipts.score(seller)
            if rated.raters:  # a seller that answers well but late or not at all scores less
                mean *= rated.score
            before = average.get(seller)
            now = mean if before is None else (1 - self.smoothing) * before \
                + self.smoothing * mean
            average[seller] = now
            row.append(round(U16_MAX * max(0.0, min(1.0, now)) ** self.sharpness))
        return tuple(row)

    async def compute(self, capability: str, epoch: int
                      ) -> tuple[list[str], list[str], EpochResult] | None:
        """Yuma over the epoch's counted reveals and their stakes; attest and record it.

        The validators are those whose reveal the board counted (a chain lists no others);
        the sellers, every registered one, in board-account order. Returns the sellers, the
        validators and the result attested (None: nothing to compute).
        """
        revealed = await self.on_board.revealed_weights(capability, epoch)
        sellers = await self.on_board.sellers(capability)
        validators = sorted(revealed)
        accounts = sorted(sellers)
        if not validators or not accounts:
            return None
        stakes = [await self.on_board.stake_of(v) for v in validators]
        weights = [[revealed[v].get(a, 0) for a in accounts] for v in validators]
        kept = self.kept[capability]
        same = kept.validators == tuple(validators) and kept.sellers == tuple(accounts)
        bonds = kept.bonds if same else [[0] * len(accounts) for _ in validators]
        result = yuma_epoch(stakes, weights, bonds, self.params)
        kept.bonds = [list(r) for r in result.bonds]
        kept.validators, kept.sellers = tuple(validators), tuple(accounts)
        board = self.on_board
        await board.attest(capability, epoch, board.outputs_hash(accounts, validators, result))
        self.book.record(capability, epoch, [sellers[a] for a in accounts], result)
        self.results[capability] = result
        self.epochs[(capability, epoch)] = {
            "capability": capability, "epoch": epoch,
            "sellers": [sellers[a] for a in accounts], "validators": validators,
            "weights": weights, "consensus": [c / ONE for c in result.consensus],
            "incentive": [i / ONE for i in result.incentive],
            "dividends": [d / ONE for d in result.dividends], "minted_by_me": False}
        for old in sorted(k for k in self.epochs if k[0] == capability)[:-KEPT_SCORES]:
            del self.epochs[old]
        logger.info("validator: %s epoch %d incentive %s", capability, epoch,
                    [round(i / ONE, 3) for i in result.incentive])
        return accounts, validators, result


