"""Dashboard forms: sign-up, log-in, API keys and members.

Forms validate what a person typed and then call ``accounts.services``; the membership rules (who may grant
which role, never leaving an organisation without an owner) live here because they are rules about a
request made by one member on another, checked before anything is written.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.db import transaction

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

    @transaction.atomic
    def save(self) -> tuple[Any, Tenant]:
        User = get_user_model()
        email = self.cleaned_data["email"]
        user = User.objects.create_user(username=email, email=email, password=self.cleaned_data["password1"])
        tenant = services.create_tenant(self.cleaned_data["organisation"].strip(), owner=user)
        return user, tenant


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


def grantable_roles(actor: Membership) -> list[str]:
    """Owners grant any role; admins manage members and admins but cannot create owners."""
    if actor.role == Role.OWNER:
        return [Role.OWNER, Role.ADMIN, Role.MEMBER]
    if actor.role == Role.ADMIN:
        return [Role.ADMIN, Role.MEMBER]
    return []


def can_change(actor: Membership, target: Membership) -> bool:
    """Whether ``actor`` may change or remove ``target`` at all (admins never touch owners)."""
    if not actor.can_manage:
        return False
    return actor.role == Role.OWNER or target.role != Role.OWNER


def _is_last_owner(target: Membership) -> bool:
    if target.role != Role.OWNER:
        return False
    others = Membership.objects.filter(tenant_id=target.tenant_id, role=Role.OWNER).exclude(pk=target.pk)
    return not others.exists()


class MemberAddForm(forms.Form):
    """Add a person by email. Someone without an account gets one and an email to set their password."""

    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(label="Role", choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args: Any, actor: Membership, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actor = actor
        allowed = grantable_roles(actor)
        self.fields["role"].choices = [(value, label) for value, label in Role.choices if value in allowed]

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if Membership.objects.filter(tenant=self.actor.tenant, user__email__iexact=email).exists():
            raise forms.ValidationError("This person is already a member.")
        return email

    @transaction.atomic
    def save(self, *, request=None) -> tuple[Membership, bool]:
        """Returns the membership and whether an account was created (and an invitation sent)."""
        User = get_user_model()
        email = self.cleaned_data["email"]
        user = User.objects.filter(email__iexact=email).order_by("id").first()
        created = user is None
        if created:
            user = services.get_or_create_user(email, email=email)
        membership = Membership.objects.create(
            user=user, tenant=self.actor.tenant, role=self.cleaned_data["role"]
        )
        if created and request is not None:
            invite = InviteForm({"email": email}, user=user)
            if invite.is_valid():
                invite.save(
                    request=request,
                    use_https=request.is_secure(),
                    subject_template_name="registration/invite_subject.txt",
                    email_template_name="registration/invite_email.txt",
                    extra_email_context={"tenant": self.actor.tenant, "inviter": request.user},
                )
        return membership, created


class InviteForm(PasswordResetForm):
    """The password-reset email, reused as an invitation: its link lets a new member choose a password.

    Django's reset form skips users without a usable password; an invited user has exactly that.
    """

    def __init__(self, *args: Any, user, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invited = user

    def get_users(self, email: str):
        return [self.invited]


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices)

    def __init__(self, *args: Any, actor: Membership, target: Membership, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actor, self.target = actor, target
        allowed = grantable_roles(actor)
        self.fields["role"].choices = [(value, label) for value, label in Role.choices if value in allowed]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not can_change(self.actor, self.target):
            raise forms.ValidationError("Only an owner can change an owner's role.")
        if data.get("role") and data["role"] != Role.OWNER and _is_last_owner(self.target):
            raise forms.ValidationError(
                "An organisation needs at least one owner: make someone else owner first."
            )
        return data

    def save(self) -> Membership:
        self.target.role = self.cleaned_data["role"]
        self.target.save(update_fields=["role"])
        return self.target


class MemberRemoveForm(forms.Form):
    def __init__(self, *args: Any, actor: Membership, target: Membership, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actor, self.target = actor, target

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not can_change(self.actor, self.target):
            raise forms.ValidationError("Only an owner can remove an owner.")
        if _is_last_owner(self.target):
            raise forms.ValidationError("The last owner cannot be removed: make someone else owner first.")
        return data

    def save(self) -> None:
        self.target.delete()
