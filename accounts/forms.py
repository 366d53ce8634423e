"""Dashboard forms: sign-up, log-in, API keys and members.

Forms validate what a person typed (and offer the choices the person has); the rules (who may grant which
role, never leaving an organisation without an owner, no member twice) are ``accounts.services``', which the
views call with the cleaned data.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm

from accounts import services
from accounts.models import Membership, Tenant

Role = Membership.Role


class SignupForm(forms.Form):
    """A new user and their own organisation (on the Free plan, which ``create_tenant`` assigns)."""

    email = forms.EmailField(label="Work email", widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    organisation = forms.CharField(
        label="Organisation name", max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )
    password1 = forms.CharField(
        label="Password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 8 characters; not a common password, not only digits, not like your email.",
    )
    password2 = forms.CharField(
        label="Confirm password", strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        User = get_user_model()
        if User.objects.filter(email__iexact=email).exists() or User.objects.filter(username=email).exists():
            raise forms.ValidationError("An account with this email already exists. Log in instead.")
        return email

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The two passwords differ.")
        elif p1 and data.get("email"):
            User = get_user_model()
            try:
                password_validation.validate_password(p1, User(username=data["email"], email=data["email"]))
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data

    def save(self) -> tuple[Any, Tenant]:
        data = self.cleaned_data
        return services.sign_up(data["email"], data["password1"], data["organisation"])


class LoginForm(AuthenticationForm):
    """Log in with an email address or a username (staff and quick-start users have usernames)."""

    username = forms.CharField(
        label="Email or username", max_length=254,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"}),
    )

    def clean(self) -> dict[str, Any]:
        raw = (self.cleaned_data.get("username") or "").strip()
        if "@" in raw:
            User = get_user_model()
            match = User.objects.filter(email__iexact=raw).order_by("id").first()
            if match is not None and not User.objects.filter(username=raw).exists():
                self.cleaned_data["username"] = match.get_username()
        return super().clean()


class OrganisationForm(forms.Form):
    """Create an organisation for a signed-in user who has none (e.g. a staff user, a removed member)."""

    name = forms.CharField(label="Organisation name", max_length=200)

    def save(self, user) -> Tenant:
        return services.create_tenant(self.cleaned_data["name"].strip(), owner=user)


class TenantSwitchForm(forms.Form):
    tenant = forms.UUIDField(label="Organisation")


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        label="Key name", max_length=100, help_text="Where the key is used, e.g. “production server”.",
        widget=forms.TextInput(attrs={"placeholder": "production server"}),
    )


class MemberAddForm(forms.Form):
    """Add a person by email (``services.add_member``). The role choices are the ones the actor may grant."""

    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(label="Role", choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args: Any, actor: Membership, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allowed = services.grantable_roles(actor)
        self.fields["role"].choices = [(value, label) for value, label in Role.choices if value in allowed]

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()


class MemberRoleForm(forms.Form):
    """A member's new role (``services.change_role``); offers the roles the actor may grant."""

    role = forms.ChoiceField(label="Role", choices=Role.choices)

    def __init__(self, *args: Any, actor: Membership, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allowed = services.grantable_roles(actor)
        self.fields["role"].choices = [(value, label) for value, label in Role.choices if value in allowed]
