from django.urls import path

from studio import consumers

# Websocket routes (live updates) are added here by the pages that use them.
websocket_urlpatterns: list = [
    path("ws/traces/", consumers.TraceListConsumer.as_asgi(), name="ws_trace_list"),
]
