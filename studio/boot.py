"""A process's entry into Django (manage.py, the ASGI module): a bad setting is one line on
stderr and exit status 2, not a traceback.

The helpers of studio/settings.py raise ImproperlyConfigured with a message naming the variable,
its value and what is expected; that message is all a person needs.
"""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured

# The status argparse (and so every manage.py command) exits with on a usage error.
BAD_SETTING_STATUS = 2


def load_settings() -> None:
    """Read the settings now, or exit with the reason."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018  (reading one setting loads them all)
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"Bad setting: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(BAD_SETTING_STATUS) from None
