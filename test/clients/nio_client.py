"""A matrix-nio (0.20) client driven by test/clients/nio.test.ts, through nio's default request paths.

Usage: nio_client.py HOMESERVER USER PASSWORD ROOM_ID PEER_USER_ID STORE_DIR

Logs in, syncs, joins ROOM_ID, creates a room inviting PEER_USER_ID, syncs again, sends a message to ROOM_ID, then syncs until
a text message from PEER_USER_ID saying "hello nio" arrives in ROOM_ID. Every step prints one JSON line on stdout;
a failed request prints {"step": "error", ...} and exits 1. The test reads the lines as they come and acts on them
(the peer answers once it has seen "sent").
"""

import asyncio
import json
import sys
import time

from nio import (
    AsyncClient,
    ErrorResponse,
    JoinResponse,
    LoginResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)


def say(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def check(step, response, expected):
    if not isinstance(response, expected):
        detail = {"status_code": getattr(response, "status_code", None), "message": getattr(response, "message", None)}
        if isinstance(response, ErrorResponse):
            detail["message"] = response.message
        say("error", at=step, response=type(response).__name__, **detail)
        raise SystemExit(1)
    return response


async def main(homeserver, user, password, room_id, peer, store_dir):
    client = AsyncClient(homeserver, user, store_path=store_dir)
    received = asyncio.get_running_loop().create_future()

    async def on_message(room, event):
        say("message", room_id=room.room_id, sender=event.sender, body=event.body, event_id=event.event_id)
        if room.room_id == room_id and event.sender == peer and event.body == "hello nio" and not received.done():
            received.set_result(event)

    client.add_event_callback(on_message, RoomMessageText)
    try:
        login = check("login", await client.login(password, device_name="nio test"), LoginResponse)
        say("login", user_id=login.user_id, device_id=login.device_id)

        first = check("sync", await client.sync(timeout=0, full_state=True), SyncResponse)
        say("sync", next_batch=first.next_batch, joined=sorted(first.rooms.join.keys()))

        joined = check("join", await client.join(room_id), JoinResponse)
        say("join", room_id=joined.room_id)

        created = check(
            "create", await client.room_create(name="made by nio", invite=[peer]), RoomCreateResponse
        )
        say("create", room_id=created.room_id)

        # nio learns of joined rooms from sync only (room_send needs the room to know whether it is encrypted).
        after_join = check("sync", await client.sync(timeout=0, since=client.next_batch), SyncResponse)
        say("sync", next_batch=after_join.next_batch, joined=sorted(client.rooms.keys()))

        sent = check(
            "send",
            await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello from nio"}),
            RoomSendResponse,
        )
        say("sent", event_id=sent.event_id)

        deadline = time.monotonic() + 60
        while not received.done() and time.monotonic() < deadline:
            check("sync", await client.sync(timeout=5000, since=client.next_batch), SyncResponse)
        if not received.done():
            say("error", at="receive", message="no message from the peer within 60 s")
            raise SystemExit(1)

        room = client.rooms[room_id]
        created_room = client.rooms.get(created.room_id)
        say(
            "state",
            members=sorted(room.users.keys()),
            created_name=created_room.name if created_room else None,
            created_invited=sorted(created_room.invited_users.keys()) if created_room else [],
        )
    finally:
        await client.close()
    say("done")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
