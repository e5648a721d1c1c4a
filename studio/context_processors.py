from typing import Any

from django.http import HttpRequest

from studio.middleware import page_project


def project(request: HttpRequest) -> dict[str, Any]:
    """The project the header's switcher and links are about: the page's own on a scoped page
    ("" for all projects), else the one last looked at. No query."""
    current = page_project(request)
    if current is None:
        from studio import projects

        current = projects.remembered(request)
    return {"current_project": current}
