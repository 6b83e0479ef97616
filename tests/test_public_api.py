"""Pin the public surface: adding or removing an export is a decision, not an accident."""

from __future__ import annotations

import aaex_agents
import aaex_agents.interop
import aaex_agents.testing

EXPECTED = {
    "AaexError", "Agent", "AgentStorage", "BadSignature", "Clock", "Context", "Directory",
    "Envelope", "EnvelopeExpired", "EnvelopeFromFuture", "EnvelopePolicy", "EnvelopeRejected",
    "ErrorReply", "HandlerDefinitionError", "HttpTransport", "Identity", "InvalidPayload",
    "KeyFileError", "LifetimeTooLong", "MalformedEnvelope", "MemoryNetwork", "MemoryTransport",
    "Credits", "Message", "OversizeFrame", "PeerRejected", "PeerUnreachable", "Protocol",
    "ReceiverBusy", "ReceiverStopping",
    "RemoteHandlerError", "ReplayedEnvelope", "ReplyError", "RequestTimeout", "Runtime",
    "RuntimeConfig", "RuntimeMetrics", "StaticDirectory", "StorageError", "SystemClock",
    "Transport", "TransportClosed", "TransportError", "UnexpectedReply", "UnknownMessageType",
    "UsageError", "WrongTarget", "handler", "on_interval", "open_runtime", "verify_signature",
    # rules for foreign (uAgents) envelopes
    "MissingExpiry", "UnsignedEnvelope",
    # sealed frames (encryption to the recipient)
    "BadSeal", "ReaddressedEnvelope", "UnknownChannel", "UnsealedEnvelope",
    # the node's language model
    "Completion", "LLM", "LLMError", "LLMOutputInvalid", "LLMRequestFailed", "LLMService",
    "LLMServiceConfig", "LLMTimeout", "LLMUnavailable", "open_llm_service",
    # what a node shares with its agents
    "DelegateTerms", "Delegated", "Delegation", "Market", "Services",
}


def test_exported_members() -> None:
    assert set(aaex_agents.__all__) == EXPECTED
    for name in aaex_agents.__all__:
        assert getattr(aaex_agents, name) is not None


def test_testing_kit_members() -> None:
    assert set(aaex_agents.testing.__all__) == {
        "Faults", "JsonLinesProcess", "ManualClock", "MemoryNetwork", "MemoryTransport", "Route",
        "ScriptedPeer", "stop_on_stdin_close_or_signal"}


def test_interop_members() -> None:
    assert set(aaex_agents.interop.__all__) == {
        "CHAT_ACK_DIGEST", "CHAT_MESSAGE_DIGEST", "CHAT_PROTOCOL_DIGEST", "CHAT_SCHEMAS",
        "ERROR_MESSAGE_DIGEST", "SUBMIT_PATH", "AddressBinding", "ChatAcknowledgement",
        "ChatMessage", "Gateway", "InteropMetrics", "MetadataContent", "Resource",
        "ResourceContent", "SchemaTable", "TextContent", "UAgentsConfig", "UAgentsGateway",
        "UAgentsKey", "UEnvelope", "add_uagents_routes", "admit", "is_uagents_address",
        "no_chat_handler", "parse_envelope", "seal_envelope",
        "serve_uagents", "session_uuid", "uagents_address", "verify_digest"}


def test_every_rejection_has_its_own_reason() -> None:
    rejections = [getattr(aaex_agents, n) for n in aaex_agents.__all__
                  if isinstance(getattr(aaex_agents, n), type)
                  and issubclass(getattr(aaex_agents, n), aaex_agents.EnvelopeRejected)
                  and getattr(aaex_agents, n) is not aaex_agents.EnvelopeRejected]
    reasons = [cls.reason for cls in rejections]
    assert len(rejections) == 18
    assert len(set(reasons)) == len(reasons)


MARKETPLACE = {
    "Accept", "AccessControl", "AccessEvent", "AccessList", "Agreed", "Agreement",
    "AlreadySettled", "Attempt", "Backoff", "BadContractSignature", "Balance", "Books", "Buyer",
    "BuyerStrategy", "BuyerUtility", "CallForProposals", "Checkpoint", "ConfigError",
    "ContractRejected", "CounterOffer", "Decline", "Delegated", "DelegationFailed", "Delegator",
    "Deliver", "Delivery", "DeliveryQuery", "Dialogue", "DialogueLimits", "DialogueState",
    "Entry",
    "InsufficientFunds", "Ledger", "LedgerConfig", "LedgerCorrupt", "LedgerError", "LedgerFull",
    "LedgerReport", "LedgerTampered", "LlmSeller", "Credits", "MalformedContract",
    "MarketSettings", "NegotiationResult", "Node", "NodeConfig", "NodeMarket", "Offer", "Propose",
    "RateLimit", "Receipt", "ReceiptMismatch", "ReceiptNotice", "Reconciliation", "Refusal",
    "ReputationBook", "Score", "Seller", "SellerStrategy", "ServiceSeller", "Settlement",
    "SignedAgreement", "SignedReceipt", "SlaOutcome", "SpendingRefused", "StatementQuery",
    "StatementReply", "Task", "Terms", "TokenTerms", "TokenUsage", "TradeError",
    "UnknownAgreement", "Verdict", "Validator", "Wallet", "Weights", "check_sla",
    "load_config", "make_receipt", "negotiate", "open_ledger", "open_node",
    "reconcile",
}

DISCOVERY = {
    "AccessPolicy", "Advertiser", "AgentRecord", "BadRecordSignature", "DhtDirectory",
    "Discovery", "DiscoveryConfig", "Listing", "MalformedRecord", "PriceModel", "Query",
    "RecordExpired", "RecordKeyMismatch", "RecordRejected", "ServiceAd", "SlaOffer",
    "StaleRecord", "Utility", "open_advertiser", "open_discovery", "parse_where",
}


def test_marketplace_and_discovery_exports() -> None:
    import discovery
    import marketplace

    assert set(marketplace.__all__) == MARKETPLACE
    assert set(discovery.__all__) == DISCOVERY
    for package in (marketplace, discovery):
        for name in package.__all__:
            assert getattr(package, name) is not None, name
