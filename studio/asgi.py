"""The ASGI application: Django (pages, API, OTLP/HTTP), Channels websockets, and the Socket.IO
server AgentScope applications connect to, in one app.

`/socket.io/` (HTTP long-polling and websocket upgrades alike) goes to python-socketio; every
other request, websocket or not, to Channels' router.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

# Django must be set up before anything imports models.
django_application = get_asgi_application()

import socketio  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from ingest.asgi import limit_request_bodies  # noqa: E402
from studio.routing import websocket_urlpatterns  # noqa: E402
from studio.sockets import sio  # noqa: E402

channels_application = ProtocolTypeRouter(
    {
        "http": limit_request_bodies(django_application),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

application = socketio.ASGIApp(sio, other_asgi_app=channels_application, socketio_path="socket.io")
