#!/usr/bin/env python3
"""A downstream consumer of Yipan events in Python (interop proof).

Subscribes to a node's downstream feed for one role, decodes each message
with protobuf classes generated from the repository's proto/ files, and
prints one JSON line per event. Personal tiers it was not entitled to are
simply absent from the payload; the event's signature (over the envelope,
which carries only tier digests) is unaffected.

Given the authors' public keys, it checks each event's signature on its own,
in either form (docs/design.md "Batch signatures"): a per-event ed25519
signature over the envelope, or a signed batch head plus the envelope's
RFC 6962 inclusion proof.

  pip install -r requirements.txt
  python -m grpc_tools.protoc -I ../../proto -I <grpc_tools>/_proto \
      --python_out=gen ../../proto/yipan/v1/*.proto
  PYTHONPATH=gen python consumer.py tls://127.0.0.1:4222 \
      'yipan.v1.down.61.610112.statistics.>' 10 nkeys/down-610112-statistics.nk tls/ca.pem \
      610112=<hex public key>,411522=<hex public key>

The NATS user is the downstream system's own NKey user (`yipan nats users
--downstream 610112:statistics`), whose permissions allow reading only that
locality's subjects for that role; the connection is TLS, trusting the
deployment's CA.
"""
import asyncio
import hashlib
import json
import ssl
import sys

import nats
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from yipan.v1 import envelope_pb2

# What a batch head signature covers before the encoded head.
HEAD_CONTEXT = b"\0yipan batch head v2\0"
# Largest tree a verifier accepts (as yipan_trust::batch::MAX_VERIFIED_LEAVES).
MAX_VERIFIED_LEAVES = 1 << 20


def leaf_hash(envelope: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + envelope).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(index: int, size: int, leaf: bytes, path) -> bytes:
    """RFC 9162 section 2.1.3.2: the root an audit path leads to."""
    if index >= size:
        raise ValueError(f"leaf {index} is outside a tree of {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ValueError("inclusion proof is too long")
        if len(p) != 32:
            raise ValueError("inclusion proof holds a hash that is not 32 bytes")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("inclusion proof is too short")
    return r


def verify(signed, env, key: VerifyKey) -> str:
    """Checks the author's signature over `signed.envelope`; returns its form."""
    if not signed.HasField("batch"):
        key.verify(signed.envelope, signed.signature)
        return "event"
    if signed.signature:
        raise ValueError("holds both a per-event signature and a batch proof")
    head = envelope_pb2.BatchHead()
    head.ParseFromString(signed.batch.head)
    # Python keeps unknown fields when re-serialising: drop them, so that a
    # padded head no longer re-encodes to the bytes received.
    head.DiscardUnknownFields()
    if head.SerializeToString(deterministic=True) != signed.batch.head:
        raise ValueError("batch head is not in canonical form")
    if head.author != env.author or not 1 <= head.first_seq <= env.author_seq <= head.last_seq:
        raise ValueError("batch head does not cover this event")
    if head.last_seq - head.first_seq + 1 > MAX_VERIFIED_LEAVES:
        raise ValueError("batch head covers too many events")
    root = root_from_path(
        env.author_seq - head.first_seq,
        head.last_seq - head.first_seq + 1,
        leaf_hash(signed.envelope),
        list(signed.batch.path),
    )
    if root != head.root:
        raise ValueError("inclusion proof does not lead to the signed root")
    key.verify(HEAD_CONTEXT + signed.batch.head, signed.batch.signature)
    return "batch"


def checked(signed, env, keys):
    """(form, verified, tamper_detected) for one event."""
    key = keys.get(env.author)
    if key is None:
        return None, None, None
    try:
        form = verify(signed, env, key)
    except (BadSignatureError, ValueError):
        return None, False, None
    # The same check must refuse the envelope with one bit flipped.
    bent = envelope_pb2.SignedEvent()
    bent.CopyFrom(signed)
    bent.envelope = signed.envelope[:-1] + bytes([signed.envelope[-1] ^ 1])
    try:
        verify(bent, env, key)
        return form, True, False
    except (BadSignatureError, ValueError):
        return form, True, True


async def main(url: str, subject: str, count: int, seed: str, ca: str, keys: dict) -> None:
    tls = ssl.create_default_context(cafile=ca)
    nc = await nats.connect(
        url,
        nkeys_seed=seed,
        tls=tls,
        tls_hostname="127.0.0.1",
        inbox_prefix=b"_INBOX_down_" + subject.split(".")[4].encode() + b"_" + subject.split(".")[5].encode(),
    )
    sub = await nc.subscribe(subject)
    await nc.flush()
    print(json.dumps({"ready": True}), flush=True)
    seen = 0
    async for msg in sub.messages:
        encoding = (msg.headers or {}).get("Yipan-Encoding", "protobuf")
        if encoding != "protobuf":
            continue
        signed = envelope_pb2.SignedEvent()
        signed.ParseFromString(msg.data)
        env = envelope_pb2.Envelope()
        env.ParseFromString(signed.envelope)
        form, verified, tamper_detected = checked(signed, env, keys)
        print(
            json.dumps(
                {
                    "subject": msg.subject,
                    "author": env.author,
                    "seq": env.author_seq,
                    "kind": env.body.WhichOneof("kind"),
                    "recipients": [r.locality for r in env.recipients],
                    "tier_digests": len(env.tier_digests),
                    "tiers": len(signed.tiers),
                    "signature_form": form,
                    "proof_hashes": len(signed.batch.path),
                    "verified": verified,
                    "tamper_detected": tamper_detected,
                }
            ),
            flush=True,
        )
        seen += 1
        if seen >= count:
            break
    await nc.close()


if __name__ == "__main__":
    keys = {}
    if len(sys.argv) > 6 and sys.argv[6]:
        for item in sys.argv[6].split(","):
            locality, hexkey = item.split("=")
            keys[locality] = VerifyKey(bytes.fromhex(hexkey))
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], keys))
