from django.urls import path  # noqa: F401

# Websocket routes (live updates) are added here by the pages that use them.
websocket_urlpatterns: list = []
