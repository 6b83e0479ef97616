# pragma version ~=0.4.3
"""
@title AAEX consensus
@notice What every operator of the market must agree on, and nothing else: stakes,
        capability and seller registrations, validators' weight commit-reveal, epoch
        attestations and the emission of each final epoch. Money is the market's own
        unit, integer micro-credits, in a uint256.
@dev Time is block numbers. Epoch e spans `epoch_length` blocks from
     `genesis + e * epoch_length`: its first `commit_blocks` take weight commitments, the
     next `reveal_blocks` take reveals, and the rest take attestations of the epoch's
     outputs. A stake counts from the epoch after it changes, so every weight of an epoch
     is fixed when the epoch starts and an attestation is counted once.
"""

MAX_SELLERS: constant(uint256) = 64
PERCENT: constant(uint256) = 100
SELLERS_PERCENT: constant(uint256) = 41
VALIDATORS_PERCENT: constant(uint256) = 41

event Granted:
    account: indexed(address)
    amount: uint256

event Staked:
    account: indexed(address)
    amount: uint256

event UnstakeRequested:
    account: indexed(address)
    amount: uint256
    unlock_block: uint256

event Withdrawn:
    account: indexed(address)
    amount: uint256

event CapabilityRegistered:
    capability: indexed(bytes32)
    owner: indexed(address)

event SellerRegistered:
    capability: indexed(bytes32)
    seller: indexed(address)

event WeightsCommitted:
    capability: indexed(bytes32)
    epoch: indexed(uint256)
    validator: indexed(address)
    commitment: bytes32

event WeightsRevealed:
    capability: indexed(bytes32)
    epoch: indexed(uint256)
    validator: indexed(address)
    sellers: DynArray[address, MAX_SELLERS]
    weights: DynArray[uint256, MAX_SELLERS]

event Attested:
    capability: indexed(bytes32)
    epoch: indexed(uint256)
    validator: indexed(address)
    outputs_hash: bytes32
    weight: uint256

event Finalized:
    capability: indexed(bytes32)
    epoch: indexed(uint256)
    outputs_hash: bytes32
    attesting_stake: uint256
    total_stake: uint256

event Emitted:
    capability: indexed(bytes32)
    epoch: indexed(uint256)
    emission: uint256
    to_sellers: uint256
    to_validators: uint256
    to_owner: uint256

admin: public(immutable(address))
genesis: public(immutable(uint256))
epoch_length: public(immutable(uint256))
commit_blocks: public(immutable(uint256))
reveal_blocks: public(immutable(uint256))
unbond_delay: public(immutable(uint256))
emission_per_epoch: public(immutable(uint256))

balance_of: public(HashMap[address, uint256])
stake_of: public(HashMap[address, uint256])
total_stake: public(uint256)
total_supply: public(uint256)
unbonding: public(HashMap[address, uint256])
unbond_at: public(HashMap[address, uint256])
# the stake at the start of the epoch in which it last changed (`_changed` holds epoch + 1)
_stake_before: HashMap[address, uint256]
_stake_changed: HashMap[address, uint256]
_total_before: uint256
_total_changed: uint256

capability_owner: public(HashMap[bytes32, address])
is_seller: public(HashMap[bytes32, HashMap[address, bool]])

commitment: public(HashMap[bytes32, HashMap[uint256, HashMap[address, bytes32]]])
revealed: public(HashMap[bytes32, HashMap[uint256, HashMap[address, bool]]])
attestation: public(HashMap[bytes32, HashMap[uint256, HashMap[address, bytes32]]])
tally: public(HashMap[bytes32, HashMap[uint256, HashMap[bytes32, uint256]]])
finalized: public(HashMap[bytes32, HashMap[uint256, bytes32]])
distributed: public(HashMap[bytes32, HashMap[uint256, bool]])


@deploy
def __init__(_epoch_length: uint256, _commit_blocks: uint256, _reveal_blocks: uint256,
             _unbond_delay: uint256, _emission_per_epoch: uint256):
    assert _commit_blocks > 0 and _reveal_blocks > 0, "windows must be at least one block"
    assert _commit_blocks + _reveal_blocks < _epoch_length, "epoch leaves no attestation window"
    admin = msg.sender
    genesis = block.number
    epoch_length = _epoch_length
    commit_blocks = _commit_blocks
    reveal_blocks = _reveal_blocks
    unbond_delay = _unbond_delay
    emission_per_epoch = _emission_per_epoch


@view
@internal
def _epoch() -> uint256:
    return (block.number - genesis) // epoch_length


@view
@internal
def _offset() -> uint256:
    return (block.number - genesis) % epoch_length


@view
@external
def current_epoch() -> uint256:
    return self._epoch()


@view
@internal
def _weight(account: address) -> uint256:
    if self._stake_changed[account] == self._epoch() + 1:
        return self._stake_before[account]
    return self.stake_of[account]


@view
@internal
def _total_weight() -> uint256:
    if self._total_changed == self._epoch() + 1:
        return self._total_before
    return self.total_stake


@view
@external
def weight_of(account: address) -> uint256:
    """@notice The stake `account` votes with in the current epoch (its stake at its start)."""
    return self._weight(account)


@view
@external
def total_weight() -> uint256:
    return self._total_weight()


@internal
def _checkpoint(account: address):
    marker: uint256 = self._epoch() + 1
    if self._stake_changed[account] != marker:
        self._stake_before[account] = self.stake_of[account]
        self._stake_changed[account] = marker
    if self._total_changed != marker:
        self._total_before = self.total_stake
        self._total_changed = marker


@external
def grant(account: address, amount: uint256):
    """@notice Genesis allocation: only the deployer creates credits besides emission."""
    assert msg.sender == admin, "only the admin grants credits"
    self.balance_of[account] += amount
    self.total_supply += amount
    log Granted(account=account, amount=amount)


@external
def stake(amount: uint256):
    assert amount > 0, "stake amount must be positive"
    assert self.balance_of[msg.sender] >= amount, "stake exceeds balance"
    self._checkpoint(msg.sender)
    self.balance_of[msg.sender] -= amount
    self.stake_of[msg.sender] += amount
    self.total_stake += amount
    log Staked(account=msg.sender, amount=amount)


@external
def request_unstake(amount: uint256):
    """@notice Stop `amount` counting now; it can be withdrawn `unbond_delay` blocks later."""
    assert amount > 0, "unstake amount must be positive"
    assert self.stake_of[msg.sender] >= amount, "unstake exceeds stake"
    self._checkpoint(msg.sender)
    self.stake_of[msg.sender] -= amount
    self.total_stake -= amount
    self.unbonding[msg.sender] += amount
    self.unbond_at[msg.sender] = block.number + unbond_delay
    log UnstakeRequested(account=msg.sender, amount=amount,
                         unlock_block=self.unbond_at[msg.sender])


@external
def withdraw():
    amount: uint256 = self.unbonding[msg.sender]
    assert amount > 0, "nothing to withdraw"
    assert block.number >= self.unbond_at[msg.sender], "still unbonding"
    self.unbonding[msg.sender] = 0
    self.balance_of[msg.sender] += amount
    log Withdrawn(account=msg.sender, amount=amount)


@external
def register_capability(capability: bytes32):
    """@notice The sender's key becomes the capability's owner key."""
    assert capability != empty(bytes32), "empty capability id"
    assert self.capability_owner[capability] == empty(address), "capability already registered"
    self.capability_owner[capability] = msg.sender
    log CapabilityRegistered(capability=capability, owner=msg.sender)


@external
def register_seller(capability: bytes32, seller: address):
    owner: address = self.capability_owner[capability]
    assert owner != empty(address), "unknown capability"
    assert msg.sender == owner, "only the capability owner registers sellers"
    assert not self.is_seller[capability][seller], "seller already registered"
    self.is_seller[capability][seller] = True
    log SellerRegistered(capability=capability, seller=seller)


@external
def commit_weights(capability: bytes32, epoch: uint256, commitment: bytes32):
    """@notice One commitment per validator and epoch; it cannot be replaced."""
    assert self.capability_owner[capability] != empty(address), "unknown capability"
    assert epoch == self._epoch(), "not the current epoch"
    assert self._offset() < commit_blocks, "commit window closed"
    assert self._weight(msg.sender) > 0, "no stake in this epoch"
    assert commitment != empty(bytes32), "empty commitment"
    assert self.commitment[capability][epoch][msg.sender] == empty(bytes32), \
        "weights already committed for this epoch"
    self.commitment[capability][epoch][msg.sender] = commitment
    log WeightsCommitted(capability=capability, epoch=epoch, validator=msg.sender,
                         commitment=commitment)


@external
def reveal_weights(capability: bytes32, epoch: uint256, sellers: DynArray[address, MAX_SELLERS],
                   weights: DynArray[uint256, MAX_SELLERS], salt: bytes32):
    """@notice The commitment is keccak256(abi_encode(capability, epoch, validator, sellers,
               weights, salt)): binding the validator stops copying another's commitment."""
    assert epoch == self._epoch(), "not the current epoch"
    offset: uint256 = self._offset()
    assert offset >= commit_blocks, "reveal window not open"
    assert offset < commit_blocks + reveal_blocks, "reveal window closed"
    committed: bytes32 = self.commitment[capability][epoch][msg.sender]
    assert committed != empty(bytes32), "no commitment to reveal"
    assert not self.revealed[capability][epoch][msg.sender], "weights already revealed"
    assert len(sellers) == len(weights), "sellers and weights differ in length"
    assert keccak256(abi_encode(capability, epoch, msg.sender, sellers, weights, salt)) \
        == committed, "reveal does not match commitment"
    previous: uint256 = 0
    for seller: address in sellers:
        assert convert(seller, uint256) > previous, "sellers must be sorted and distinct"
        assert self.is_seller[capability][seller], "weight for an unregistered seller"
        previous = convert(seller, uint256)
    self.revealed[capability][epoch][msg.sender] = True
    log WeightsRevealed(capability=capability, epoch=epoch, validator=msg.sender,
                        sellers=sellers, weights=weights)


@external
def attest(capability: bytes32, epoch: uint256, outputs_hash: bytes32):
    """@notice Count the sender's stake for `outputs_hash`; 2/3 of the epoch's stake makes it
               final. Only within the epoch, so every vote weighs what it did at its start."""
    assert self.capability_owner[capability] != empty(address), "unknown capability"
    assert epoch == self._epoch(), "not the current epoch"
    assert self._offset() >= commit_blocks + reveal_blocks, "attestation window not open"
    assert outputs_hash != empty(bytes32), "empty outputs hash"
    weight: uint256 = self._weight(msg.sender)
    assert weight > 0, "no stake in this epoch"
    assert self.attestation[capability][epoch][msg.sender] == empty(bytes32), "already attested"
    self.attestation[capability][epoch][msg.sender] = outputs_hash
    self.tally[capability][epoch][outputs_hash] += weight
    log Attested(capability=capability, epoch=epoch, validator=msg.sender,
                 outputs_hash=outputs_hash, weight=weight)
    total: uint256 = self._total_weight()
    attesting: uint256 = self.tally[capability][epoch][outputs_hash]
    if self.finalized[capability][epoch] == empty(bytes32) and attesting * 3 >= total * 2:
        self.finalized[capability][epoch] = outputs_hash
        log Finalized(capability=capability, epoch=epoch, outputs_hash=outputs_hash,
                      attesting_stake=attesting, total_stake=total)


@internal
def _pay(accounts: DynArray[address, MAX_SELLERS], shares: DynArray[uint256, MAX_SELLERS],
         pool: uint256) -> uint256:
    """@notice Pay `pool` pro rata to `shares`, rounding down; returns what was paid."""
    total: uint256 = 0
    for share: uint256 in shares:
        total += share
    if total == 0:
        return 0
    paid: uint256 = 0
    for i: uint256 in range(len(accounts), bound=MAX_SELLERS):
        amount: uint256 = pool * shares[i] // total
        self.balance_of[accounts[i]] += amount
        paid += amount
    return paid


@external
def distribute(capability: bytes32, epoch: uint256,
               sellers: DynArray[address, MAX_SELLERS], incentive: DynArray[uint256, MAX_SELLERS],
               validators: DynArray[address, MAX_SELLERS],
               dividends: DynArray[uint256, MAX_SELLERS]):
    """@notice Mint a final epoch's emission: 41% to sellers by incentive, 41% to validators
               by dividends, the rest (18% plus every unit that rounding or an empty side
               leaves) to the capability's owner, so the three parts sum to the emission."""
    outputs: bytes32 = self.finalized[capability][epoch]
    assert outputs != empty(bytes32), "epoch not final"
    assert not self.distributed[capability][epoch], "emission already distributed"
    assert len(sellers) == len(incentive), "sellers and incentive differ in length"
    assert len(validators) == len(dividends), "validators and dividends differ in length"
    assert keccak256(abi_encode(sellers, incentive, validators, dividends)) == outputs, \
        "outputs do not match the finalized hash"
    self.distributed[capability][epoch] = True
    emission: uint256 = emission_per_epoch
    seller_pool: uint256 = emission * SELLERS_PERCENT // PERCENT
    validator_pool: uint256 = emission * VALIDATORS_PERCENT // PERCENT
    to_sellers: uint256 = self._pay(sellers, incentive, seller_pool)
    to_validators: uint256 = self._pay(validators, dividends, validator_pool)
    to_owner: uint256 = emission - to_sellers - to_validators
    self.balance_of[self.capability_owner[capability]] += to_owner
    self.total_supply += emission
    log Emitted(capability=capability, epoch=epoch, emission=emission, to_sellers=to_sellers,
                to_validators=to_validators, to_owner=to_owner)
