from typing import Any

from django.conf import settings
from django.http import HttpRequest


def auth(request: HttpRequest) -> dict[str, Any]:
    # Lazy: pages that never show the user cost no session query.
    return {"auth_on": settings.STUDIO_AUTH == "login"}
