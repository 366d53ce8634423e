"""Dashboard forms: sign-up, log-in, API keys and members.

Forms validate what a person typed (and offer the choices the person has); the rules (who may grant which
role, never leaving an organisation without an owner, no member twice) are ``accounts.services``', which the
views call with the cleaned data.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.utils import timezone

from accounts import selectors, services
from accounts.models import ApiKey, Membership, Tenant

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


class ApiKeyScopeForm(forms.Form):
    """A key's name, expiry and scopes, as typed; ``key_options()`` is what ``services.issue_api_key`` and
    ``services.update_api_key`` take. The job kinds offered are the registered ones
    (``services.job_kind_choices``: jobs registers its kinds when it loads)."""

    ACCESS_CHOICES = [
        ("full", "Every job kind: create, cancel and read jobs"),
        ("kinds", "Only the job kinds chosen below (and read everything)"),
        ("read_only", "Read only: list and download jobs, read usage; never create or cancel"),
    ]

    name = forms.CharField(
        label="Key name", max_length=100, help_text="Where the key is used, e.g. “production server”.",
        widget=forms.TextInput(attrs={"placeholder": "production server"}),
    )
    expires_on = forms.DateField(
        label="Expires on (optional)", required=False, widget=forms.DateInput(attrs={"type": "date"}),
        help_text="From 00:00 UTC that day the key is refused with API_KEY_EXPIRED. Empty: never expires.",
    )
    # Not required: a form that sends only a name (older pages, scripts) creates a full-access key, as before.
    access = forms.ChoiceField(
        label="Access", choices=ACCESS_CHOICES, initial="full", required=False, widget=forms.RadioSelect
    )
    job_kinds = forms.MultipleChoiceField(
        label="Job kinds it may create", required=False, widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["job_kinds"].choices = services.job_kind_choices()

    def clean_expires_on(self):
        day = self.cleaned_data.get("expires_on")
        if day is not None and day <= timezone.now().date():
            raise forms.ValidationError("Choose a day after today (UTC).")
        return day

    def clean_access(self) -> str:
        return self.cleaned_data.get("access") or "full"

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("access") == "kinds" and not data.get("job_kinds"):
            self.add_error("job_kinds", "Choose at least one job kind, or another kind of access.")
        return data

    def key_options(self) -> dict[str, Any]:
        data = self.cleaned_data
        day = data.get("expires_on")
        return {
            "name": data["name"],
            "expires_at": datetime.combine(day, time.min, tzinfo=UTC) if day else None,
            "read_only": data["access"] == "read_only",
            "job_kinds": sorted(data.get("job_kinds") or []) if data["access"] == "kinds" else [],
        }

    @classmethod
    def initial_for(cls, api_key: ApiKey) -> dict[str, Any]:
        """The edit form's starting values for ``api_key``."""
        access = "read_only" if api_key.read_only else "kinds" if api_key.job_kinds else "full"
        return {
            "name": api_key.name, "access": access, "job_kinds": list(api_key.job_kinds or []),
            "expires_on": api_key.expires_at.astimezone(UTC).date() if api_key.expires_at else None,
        }


class ApiKeyCreateForm(ApiKeyScopeForm):
    """A new key: name, and optionally an expiry and narrower scopes."""


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


class RequestLogFilterForm(forms.Form):
    """The Request log page's filters (GET); ``filters()`` is what ``selectors.api_requests`` takes."""

    STATUS_CHOICES = [("", "Any status"), ("errors", "Errors (4xx and 5xx)"), ("2xx", "2xx success"),
                      ("4xx", "4xx refused"), ("5xx", "5xx server error")]
    METHOD_CHOICES = [("", "Any method"), ("GET", "GET"), ("POST", "POST"), ("DELETE", "DELETE")]

    q = forms.CharField(
        label="Search", required=False, max_length=200,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "request id, path or error code"}),
    )
    status = forms.ChoiceField(label="Status", required=False, choices=STATUS_CHOICES)
    key = forms.ChoiceField(label="API key", required=False)
    method = forms.ChoiceField(label="Method", required=False, choices=METHOD_CHOICES)

    def __init__(self, *args: Any, keys: list[ApiKey], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["key"].choices = [("", "Any key")] + [(str(k.pk), f"{k.name} (ask_{k.prefix}_…)") for k in keys]

    def filters(self) -> selectors.RequestFilters:
        data = self.cleaned_data
        return selectors.RequestFilters(
            q=data.get("q") or "", status=data.get("status") or "", key=data.get("key") or "",
            method=data.get("method") or "",
        )
