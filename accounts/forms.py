from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from accounts.models import ApiKey, Role


class NewUserForm(UserCreationForm):
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "role")


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class NewKeyForm(forms.Form):
    kind = forms.ChoiceField(choices=ApiKey.Kind.choices, initial=ApiKey.Kind.INGEST)
    project = forms.CharField(max_length=200, required=False, initial="default")
    user = forms.ModelChoiceField(queryset=get_user_model().objects.none(), required=False)
    name = forms.CharField(max_length=100, required=False)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = get_user_model().objects.filter(is_active=True)

    def clean(self) -> dict:
        data = super().clean()
        if data.get("kind") == ApiKey.Kind.INGEST and not data.get("project"):
            self.add_error("project", "An ingest key sends to one project.")
        if data.get("kind") == ApiKey.Kind.READ and not data.get("user"):
            self.add_error("user", "A read key acts as one user.")
        return data
