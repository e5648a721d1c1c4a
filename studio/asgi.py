"""The ASGI application: Django (pages, API, OTLP/HTTP) and Channels websockets in one app,
wrapped by what installed apps mount in front of it (runs: the Socket.IO server at `/socket.io/`,
see studio.extensions). Outermost, the Host check (studio.security), which Socket.IO and
websockets would otherwise bypass.
"""

from django.core.asgi import get_asgi_application

from studio.boot import load_settings

# A bad setting stops the server here with one line, whoever imports this module (uvicorn too).
load_settings()
# Django must be set up before anything imports models.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from ingest.asgi import limit_request_bodies  # noqa: E402
from studio import extensions  # noqa: E402
from studio.request_threads import pooled_request_threads  # noqa: E402
from studio.routing import websocket_urlpatterns  # noqa: E402
from studio.security import only_allowed_hosts  # noqa: E402

channels_application = ProtocolTypeRouter(
    {
        "http": limit_request_bodies(pooled_request_threads(django_application)),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

application = channels_application
for wrap in extensions.asgi_wrappers:
    application = wrap(application)
application = only_allowed_hosts(application)
