"""A real SMTP server (aiosmtpd) for the channel tests.

Usage: smtp_server.py PORT OUT.jsonl

Accepts mail on 127.0.0.1:PORT and appends one JSON line per message to OUT.jsonl:
{mail_from, rcpt_tos, subject, body (decoded), message_id, idempotency_key}. Refuses any
recipient whose address starts with "bounce" with 550 (a permanent failure, i.e. a bounce).
Prints "ready" once listening, then serves until killed.
"""
import email
import email.policy
import json
import sys
import time

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, out):
        self.out = out

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            # Line ends normalised: on the wire they are CRLF.
            "body": (body.get_content() if body is not None else "").replace("\r\n", "\n"),
            "message_id": str(msg["message-id"]),
            "idempotency_key": str(msg["x-cairn-idempotency-key"]),
        }
        with open(self.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Handler(out), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
