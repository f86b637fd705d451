"""The federation's CT logs on a running node (:mod:`trustchain.ct.federation`).

After every commit (and at start) the node makes its own logs known (``node-logs``)
if the committed state does not hold them as they are; its CA then takes SCTs from
logs of two other nodes, asked over stoq/1 ``ct.add-pre-chain`` on the mutually
authenticated connections the consensus keeps (:meth:`FederationCtNode.submit`),
and the log list it serves (``GET /logs``, ``ct.logs``) is the federation's.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

from transport.ca import CaRunner
from transport.ct import LogRunner
from transport.peers import Peers
from trustchain.ca.steps import CtLog
from trustchain.consensus.operations import OperationKind
from trustchain.ct.federation import FederatedLog, FederationLogs, announcement
from trustchain.ct.log import BadSubmission
from trustchain.ct.policy import stake_policy
from trustchain.ct.structs import SCT, DecodeError
from trustchain.wiring.federation import NodeOperations

#: How long this node waits for another node's log to answer an add-pre-chain (the
#: CA's own bound, transport.ca.SCT_BOUND, cuts it shorter).
REMOTE_TIMEOUT = 30.0


class FederationCtNode:
    def __init__(self, state: FederationLogs, runner: LogRunner, operations: NodeOperations,
                 peers: Peers, prefix: dict[str, str], mmd: int, witness: str) -> None:
        self.state = state
        self._runner = runner
        self._operations = operations
        self._peers = peers
        #: log name -> its submission prefix (https://host[:port]/logs/<name>/).
        self._prefix = prefix
        self._mmd = mmd
        #: This node's witness key (a cosignature/v1 vkey).
        self._witness = witness

    def mine(self) -> list[FederatedLog]:
        node = self._operations.node
        return [FederatedLog(node, name, self._runner.public_key_der(name), self._prefix[name],
                             self._mmd, lg.expiry,
                             lg.note_signer.verifier().vkey() if lg.note_signer else "")
                for name, lg in self._runner.logs.items()]

    def after_commit(self) -> None:
        mine = {log.name: log for log in self.mine()}
        node = self._operations.node
        if self.state.logs.get(node) != mine or self.state.witnesses.get(node) != self._witness:
            body = announcement(list(mine.values()), self._witness)
            self._operations.send(OperationKind.NODE_LOGS, body, what=json.dumps(body))

    def others(self) -> Sequence[CtLog]:
        """Other nodes' usable logs, for the CA."""
        return [CtLog(log.name, log.key, log.expiry, log.operator)
                for log in self.state.usable() if log.operator != self._operations.node]

    def log_list(self, base_url: str) -> dict[str, object]:
        """The federation's log list (this node first); this node's own until the state
        holds any log (a node that has not yet seen a block)."""
        if not self.state.logs:
            return self._runner.log_list(base_url)
        return self.state.log_list(first=self._operations.node)

    def witness_policy(self) -> str:
        """The federation's witness policy as C2SP tlog-policy text: its logs' note keys,
        and a quorum of witnesses holding more than 2/3 of the validators' stake."""
        stakes = self.state.stakes()  # as the log-final checks weigh cosignatures
        witnesses = [(node, vkey, stakes.get(node, 0))
                     for node, vkey in sorted(self.state.witnesses.items())]
        return stake_policy(witnesses, [log.note_key for log in self.state.usable()])

    async def submit(self, operator: str, name: str, chain: list[str]) -> bytes:
        """The SCT of ``operator``'s log ``name`` for a precertificate chain (base64 DER).

        :raises BadSubmission: refused, unreachable, or not an SCT of that log.
        """
        message = json.dumps({"log": name, "chain": chain}).encode()
        try:
            answer = await self._peers.request(operator, "ct", "add-pre-chain", message)
        except Exception as exc:  # not connected, or the connection closed
            raise BadSubmission(f"node {operator} is not reachable: {exc}") from None
        if answer.status != 200:
            detail = answer.message[:200].decode("utf-8", "replace")
            raise BadSubmission(f"node {operator} refused ({answer.status}): {detail}")
        try:
            sct = sct_from_json(json.loads(answer.message))
        except (ValueError, KeyError, TypeError, DecodeError) as exc:
            raise BadSubmission(f"node {operator} answered no SCT: {exc}") from None
        expected = self.state.logs.get(operator, {}).get(name)
        if expected is None or sct.log_id != expected.log_id:
            raise BadSubmission(f"node {operator} answered for another log than {name}")
        return sct.to_bytes()  # its signature is verified before it is embedded


def sct_from_json(answer: dict[str, object]) -> SCT:
    """RFC 6962 section 4.1's add-chain answer as an SCT (``signature`` is the TLS
    ``digitally-signed`` struct, as ``transport.ct.sct_json`` writes it)."""
    if answer.get("sct_version") != 0:
        raise ValueError("not a v1 SCT")
    log_id = base64.b64decode(str(answer["id"]), validate=True)
    extensions = base64.b64decode(str(answer["extensions"]), validate=True)
    signed = base64.b64decode(str(answer["signature"]), validate=True)
    timestamp = answer["timestamp"]
    if not isinstance(timestamp, int) or not 0 <= timestamp < 2**64 or len(extensions) > 65535:
        raise ValueError("timestamp or extensions out of range")
    return SCT.from_bytes(b"\x00" + log_id + timestamp.to_bytes(8, "big")
                          + len(extensions).to_bytes(2, "big") + extensions + signed)


def wire(ca: CaRunner, node: FederationCtNode) -> None:
    """The CA takes other nodes' logs from the committed state and asks them over stoq/1."""
    ca.other_logs = node.others
    ca.remote = node.submit
