"""Which handler answers which method (a SETUP goes to the publisher side when its session publishes)."""

from __future__ import annotations

from streamd.handlers.common import Handler, Reply, session_of
from streamd.handlers.player import PlayerHandlers
from streamd.publishing import Publishing
from streamd.rtsp.message import Request
from streamd.server_session import Client, PublisherSession


def method_table(player: PlayerHandlers, publishing: Publishing) -> dict[str, Handler]:
    async def setup(client: Client, request: Request) -> Reply:
        c = player.c
        session = session_of(c.sessions, request, client, c.clock, required=False)
        if isinstance(session, PublisherSession):
            return publishing.setup_record(client, request, session)
        return await player.setup(client, request, session)

    return {
        "OPTIONS": player.options,
        "DESCRIBE": player.describe,
        "SETUP": setup,
        "PLAY": player.play,
        "PAUSE": player.pause,
        "TEARDOWN": player.teardown,
        "GET_PARAMETER": player.get_parameter,
        "SET_PARAMETER": player.set_parameter,
        "ANNOUNCE": publishing.announce,
        "RECORD": publishing.record,
    }
