"""Who may do what: users with a role, and API keys (ingest keys for a project, read keys for a
user). Keys are stored as their sha256 only; the key itself is shown once, at creation."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


# What each role may do includes everything the roles below it may.
RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2}


class User(AbstractUser):
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)

    @property
    def effective_role(self) -> str:
        # `createsuperuser` makes admins without knowing about roles.
        return Role.ADMIN if self.is_superuser else self.role

    def has_role(self, role: str) -> bool:
        return self.is_active and RANK[Role(self.effective_role)] >= RANK[Role(role)]


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    class Kind(models.TextChoices):
        INGEST = "ingest", "Ingest"
        READ = "read", "Read"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=100, blank=True)
    # The key's first characters, so a person can tell keys apart in lists; not enough to use it.
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    project = models.CharField(max_length=200, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.kind})"

    @property
    def scope(self) -> str:
        return f"project {self.project}" if self.kind == self.Kind.INGEST else f"user {self.user}"
