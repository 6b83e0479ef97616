"""Trade: how a buyer and a seller come to terms and how work is delegated.

`strategies` (concession and utility) drive `negotiation` (contract-net with alternating
offers); `dialogues` bounds what a seller holds for negotiations still open; `policy` guards
access and spending; `contracting` turns an accepted offer into a signed agreement;
`delegation` buys a task end to end and `selling` performs it; `buying` is the agent that
buys; `statements` lets the two compare books; `grants` enforces data owners' grants on the
seller's side; `market` is the node's market service that hands agents a delegator. Builds
on `marketplace.contracts`, never on the node.
"""

from .buying import Buyer
from .delegation import Attempt, Backoff, Books, Delegated, Delegator, Found
from .dialogues import DialogueLimits
from .errors import BadTask, DelegationFailed, Refusal, SpendingRefused, TradeError
from .grants import DataUse, GrantDesk, GrantRevoked, RevocationTaken, data_hash
from .llm_seller import LlmSeller
from .market import MarketSettings, NodeMarket
from .negotiation import (
    Accept,
    Agreed,
    CallForProposals,
    CounterOffer,
    Decline,
    Dialogue,
    DialogueState,
    NegotiationResult,
    Propose,
    Seller,
    negotiate,
)
from .policy import AccessControl, AccessList, RateLimit, Wallet
from .selling import Deliver, DeliveryQuery, ReceiptNotice, ServiceSeller, Task
from .statements import (
    Reconciliation,
    StatementQuery,
    StatementReply,
    reconcile,
)
from .strategies import BuyerStrategy, BuyerUtility, Offer, SellerStrategy, Weights
from .validator import Validator

__all__ = [
    "Accept",
    "AccessControl",
    "AccessList",
    "Agreed",
    "Attempt",
    "Backoff",
    "BadTask",
    "Books",
    "Buyer",
    "BuyerStrategy",
    "BuyerUtility",
    "CallForProposals",
    "CounterOffer",
    "DataUse",
    "Decline",
    "Delegated",
    "DelegationFailed",
    "Delegator",
    "Deliver",
    "DeliveryQuery",
    "Dialogue",
    "DialogueLimits",
    "DialogueState",
    "Found",
    "GrantDesk",
    "GrantRevoked",
    "LlmSeller",
    "MarketSettings",
    "NegotiationResult",
    "NodeMarket",
    "Offer",
    "Propose",
    "RateLimit",
    "ReceiptNotice",
    "Reconciliation",
    "Refusal",
    "RevocationTaken",
    "Seller",
    "SellerStrategy",
    "ServiceSeller",
    "SpendingRefused",
    "StatementQuery",
    "StatementReply",
    "Task",
    "TradeError",
    "Validator",
    "Wallet",
    "Weights",
    "data_hash",
    "negotiate",
    "reconcile",
]
