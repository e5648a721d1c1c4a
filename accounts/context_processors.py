from typing import Any

from django.conf import settings
from django.http import HttpRequest

from accounts.models import Role
from accounts.roles import allowed


def auth(request: HttpRequest) -> dict[str, Any]:
    # Lazy: pages that never show the user cost no session query (a template calls a callable
    # only where it uses it).
    login = settings.STUDIO_AUTH == "login"
    return {
        "auth_on": login,
        # Whether the controls that change things (delete, answer an agent) are shown: a viewer
        # would get 403 from them.
        "may_change": (lambda: allowed(request.user, Role.MEMBER)) if login else True,
    }
