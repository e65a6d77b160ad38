#!/usr/bin/env python3
"""A downstream consumer of Yipan events in Python (interop proof).

Subscribes to a node's downstream feed for one role, decodes each message
with protobuf classes generated from the repository's proto/ files, and
prints one JSON line per event. Personal tiers it was not entitled to are
simply absent from the payload; the event's signature (over the envelope,
which carries only tier digests) is unaffected.

  pip install -r requirements.txt
  python -m grpc_tools.protoc -I ../../proto -I <grpc_tools>/_proto \
      --python_out=gen ../../proto/yipan/v1/*.proto
  PYTHONPATH=gen python consumer.py tls://127.0.0.1:4222 \
      'yipan.v1.down.61.610112.statistics.>' 10 nkeys/down-610112-statistics.nk tls/ca.pem

The NATS user is the downstream system's own NKey user (`yipan nats users
--downstream 610112:statistics`), whose permissions allow reading only that
locality's subjects for that role; the connection is TLS, trusting the
deployment's CA.
"""
import asyncio
import json
import ssl
import sys

import nats
from yipan.v1 import envelope_pb2


async def main(url: str, subject: str, count: int, seed: str, ca: str) -> None:
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
                    "signature_bytes": len(signed.signature),
                }
            ),
            flush=True,
        )
        seen += 1
        if seen >= count:
            break
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]))
