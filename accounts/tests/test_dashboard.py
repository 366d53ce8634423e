"""Dashboard account pages: who may open what (anonymous, staff without an organisation, member, admin,
owner), tenant isolation of every object URL, and the flows behind the pages (sign-up, log-in by email,
password reset, tenant switching, API keys shown once, member management rules)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.models import ApiKey, Membership, Tenant
from accounts.scoping import SESSION_TENANT_KEY

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-42"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


ROLES = ["anonymous", "staff", "member", "admin", "owner"]


def expected(who: str, *, manage: bool) -> int:
    """What a GET of a tenant page returns: login redirect, welcome redirect, 403 or 200."""
    if who == "anonymous" or who == "staff":
        return 302
    if manage and who == "member":
        return 403
    return 200


# --- the permission matrix ----------------------------------------------------------------------------------

PAGES = [
    ("dashboard:overview", False),
    ("dashboard:jobs", False),
    ("dashboard:job-new", False),
    ("dashboard:members", False),
    ("dashboard:keys", True),
    ("dashboard:billing", True),
]


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize(("name", "manage"), PAGES)
def test_page_permissions(people, who, name, manage):
    response = people.client(who).get(reverse(name))
    if who == "anonymous" and name == "dashboard:overview":  # the landing page (jobs/tests/test_console.py)
        assert response.status_code == 200 and "landing.html" in [t.name for t in response.templates]
        return
    assert response.status_code == expected(who, manage=manage), (who, name)
    if who == "anonymous":
        assert response["Location"].startswith(reverse("dashboard:login"))
    elif who == "staff":  # staff belong to no organisation: the dashboard never shows them a tenant's data
        assert response["Location"] == reverse("dashboard:welcome")
    elif response.status_code == 403:
        assert b"owners and admins" in response.content


@pytest.mark.parametrize("who", ROLES)
def test_object_pages_permissions(people, who):
    key = services.issue_api_key(people.tenant, "ci").api_key
    target = people.membership("member")
    for url, manage in (
        (reverse("dashboard:key-revoke", args=[key.pk]), True),
        (reverse("dashboard:member-remove", args=[target.pk]), True),
    ):
        assert people.client(who).get(url).status_code == expected(who, manage=manage), (who, url)


@pytest.mark.parametrize("who", ["admin", "owner"])
def test_other_tenants_objects_are_404(people, who):
    """Object URLs are looked up inside the session's tenant: another tenant's ids do not exist."""
    their_key = services.issue_api_key(people.other_tenant, "theirs").api_key
    their_member = people.membership("outsider", people.other_tenant)
    client = people.client(who)
    assert client.get(reverse("dashboard:key-revoke", args=[their_key.pk])).status_code == 404
    assert client.post(reverse("dashboard:key-revoke", args=[their_key.pk])).status_code == 404
    assert client.get(reverse("dashboard:member-remove", args=[their_member.pk])).status_code == 404
    assert client.post(reverse("dashboard:member-remove", args=[their_member.pk])).status_code == 404
    assert (
        client.post(reverse("dashboard:member-role", args=[their_member.pk]), {"role": "member"}).status_code
        == 404
    )
    their_key.refresh_from_db()
    assert their_key.revoked_at is None
    assert Membership.objects.filter(pk=their_member.pk, role="owner").exists()


def test_lists_show_only_the_current_tenant(people):
    services.issue_api_key(people.tenant, "ours-key")
    services.issue_api_key(people.other_tenant, "their-key")
    client = people.client("owner")
    keys = client.get(reverse("dashboard:keys")).content.decode()
    assert "ours-key" in keys and "their-key" not in keys
    members = client.get(reverse("dashboard:members")).content.decode()
    assert "member@example.com" in members and "outsider@example.com" not in members


@pytest.mark.parametrize("who", ["member", "anonymous", "staff"])
def test_mutations_refused_for_non_managers(people, who):
    client = people.client(who)
    target = people.membership("admin")
    key = services.issue_api_key(people.tenant, "ci").api_key
    posts = [
        (reverse("dashboard:keys"), {"name": "sneaky"}),
        (reverse("dashboard:key-revoke", args=[key.pk]), {}),
        (reverse("dashboard:members"), {"email": "new@example.com", "role": "member"}),
        (reverse("dashboard:member-role", args=[target.pk]), {"role": "member"}),
        (reverse("dashboard:member-remove", args=[target.pk]), {}),
        (reverse("dashboard:billing-checkout"), {"plan": "pro"}),
        (reverse("dashboard:billing-portal"), {}),
    ]
    for url, data in posts:
        response = client.post(url, data)
        assert response.status_code in (302, 403), (url, response.status_code)
        if who == "member":
            assert response.status_code == 403, url
    assert ApiKey.objects.filter(tenant=people.tenant).count() == 1
    key.refresh_from_db()
    assert key.revoked_at is None
    target.refresh_from_db()
    assert target.role == "admin"
    assert not Membership.objects.filter(user__email="new@example.com").exists()


def test_nav_hides_manager_pages_from_members(people):
    page = people.client("member").get(reverse("dashboard:overview")).content.decode()
    assert reverse("dashboard:keys") not in page and reverse("dashboard:billing") not in page
    page = people.client("admin").get(reverse("dashboard:overview")).content.decode()
    assert reverse("dashboard:keys") in page and reverse("dashboard:billing") in page


# --- admin site: staff only ---------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ROLES)
def test_only_staff_enter_the_admin(people, who):
    response = people.client(who).get(reverse("admin:index"))
    if who == "staff":
        assert response.status_code == 200
        # The queues dashboard (django-rq: depth, workers, failed jobs) is linked from the index.
        assert reverse("admin:django_rq_dashboard_changelist") in response.content.decode()
    else:
        assert response.status_code == 302 and "login" in response["Location"]


def test_staff_sees_admin_link_customers_do_not(people):
    Membership.objects.create(user=people.users["staff"], tenant=people.tenant, role=Membership.Role.MEMBER)
    assert (
        reverse("admin:index") in people.client("staff").get(reverse("dashboard:overview")).content.decode()
    )
    assert (
        reverse("admin:index")
        not in people.client("owner").get(reverse("dashboard:overview")).content.decode()
    )


# --- sign-up, log-in, password reset, welcome, switching ----------------------------------------------------


def test_signup_creates_user_tenant_on_free_plan_and_logs_in(db):
    from billing.selectors import usage_summary

    client = Client()
    response = client.post(
        reverse("dashboard:signup"),
        {
            "email": "New.Person@Example.com",
            "organisation": "Newco",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:overview")
    user = get_user_model().objects.get(email="new.person@example.com")
    membership = Membership.objects.get(user=user)
    assert membership.role == "owner" and membership.tenant.name == "Newco"
    assert usage_summary(membership.tenant)["plan"]["code"] == "free"
    assert client.session[SESSION_TENANT_KEY] == str(membership.tenant_id)
    assert client.get(reverse("dashboard:overview")).status_code == 200


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"email": "owner@example.com"}, "email"),  # taken
        ({"password2": "something-else-42"}, "password2"),
        ({"password1": "12345678", "password2": "12345678"}, "password1"),  # numeric, common
        ({"organisation": ""}, "organisation"),
    ],
)
def test_signup_refusals(people, data, field):
    form = {
        "email": "fresh@example.com",
        "organisation": "Fresh",
        "password1": PASSWORD,
        "password2": PASSWORD,
    }
    response = Client().post(reverse("dashboard:signup"), {**form, **data})
    assert response.status_code == 200
    assert response.context["form"].errors.get(field), response.context["form"].errors
    assert not Tenant.objects.filter(name="Fresh").exists()


def test_login_with_email_or_username_and_logout(people):
    client = Client()
    response = client.post(
        reverse("dashboard:login"), {"username": "OWNER@example.com", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert client.get(reverse("dashboard:overview")).status_code == 200
    assert client.post(reverse("dashboard:logout")).status_code == 302
    assert client.get(reverse("dashboard:jobs")).status_code == 302
    bad = Client().post(reverse("dashboard:login"), {"username": "owner@example.com", "password": "wrong"})
    assert bad.status_code == 200 and bad.context["form"].errors


def test_password_reset_by_email(people, mailoutbox):
    client = Client()
    response = client.post(reverse("dashboard:password_reset"), {"email": "member@example.com"})
    assert response.status_code == 302
    assert len(mailoutbox) == 1
    link = re.search(r"https?://[^/]+(/reset/\S+/)", mailoutbox[0].body).group(1)
    page = client.get(link, follow=True)
    assert page.status_code == 200 and page.context["validlink"]
    new = "another-strong-secret-77"
    done = client.post(page.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert done.status_code == 302
    assert Client().login(username="member@example.com", password=new)


def test_staff_without_organisation_can_create_one(people):
    client = people.client("staff")
    assert client.get(reverse("dashboard:welcome")).status_code == 200
    response = client.post(reverse("dashboard:welcome"), {"name": "Staff Lab"})
    assert response.status_code == 302
    assert Membership.objects.get(user=people.users["staff"]).tenant.name == "Staff Lab"
    # Someone with an organisation is sent on to the overview.
    assert people.client("owner").get(reverse("dashboard:welcome"))["Location"] == reverse(
        "dashboard:overview"
    )


def test_switch_tenant_only_between_own_memberships(people):
    second = services.create_tenant("Acme Labs", owner=people.users["member"])
    client = people.client("member")
    client.post(reverse("dashboard:switch-tenant"), {"tenant": str(second.pk)})
    assert client.session[SESSION_TENANT_KEY] == str(second.pk)
    # Now owner of Acme Labs: the keys page opens (it was 403 as a member of Acme).
    assert client.get(reverse("dashboard:keys")).status_code == 200
    client.post(reverse("dashboard:switch-tenant"), {"tenant": str(people.other_tenant.pk)})
    assert client.session[SESSION_TENANT_KEY] == str(second.pk)  # not a member of Globex: unchanged


# --- API keys -----------------------------------------------------------------------------------------------


def test_create_key_shows_secret_once(people):
    """POST, redirect, GET: the secret is on the one page the redirect leads to; reloading that page shows
    no secret and creates no key (the POST's response used to be the page, so a reload posted again)."""
    client = people.client("admin")
    response = client.post(reverse("dashboard:keys"), {"name": "production"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:keys")
    shown = client.get(reverse("dashboard:keys"))
    assert shown["Cache-Control"] == "no-store"
    secret = shown.context["issued"]["secret"]
    assert secret in shown.content.decode() and "production" in shown.content.decode()
    key = ApiKey.objects.get(tenant=people.tenant, name="production")
    assert key.created_by == people.users["admin"] and services.verify_key(key, secret)
    assert secret not in str(dict(client.session))  # it left the session when it was shown
    again = client.get(reverse("dashboard:keys"))
    assert secret not in again.content.decode() and key.prefix in again.content.decode()
    assert "Cache-Control" not in again or "no-store" not in again["Cache-Control"]
    assert ApiKey.objects.filter(tenant=people.tenant).count() == 1


def test_new_key_secret_is_not_shown_after_a_late_redirect(people, monkeypatch):
    import time

    client = people.client("owner")
    client.post(reverse("dashboard:keys"), {"name": "late"})
    later = time.time() + 301
    monkeypatch.setattr(time, "time", lambda: later)
    page = client.get(reverse("dashboard:keys"))
    assert page.context["issued"] is None and "late" in page.content.decode()
    assert "dashboard:new_api_key" not in client.session  # popped all the same


def test_new_key_secret_is_not_shown_in_another_organisation(people):
    """Created in Acme, then switched to another organisation before the redirect landed: not shown there."""
    from accounts.scoping import SESSION_TENANT_KEY

    client = people.client("owner")
    second = services.create_tenant("Second", owner=people.users["owner"])
    client.post(reverse("dashboard:keys"), {"name": "acme key"})
    session = client.session
    session[SESSION_TENANT_KEY] = str(second.pk)
    session.save()
    page = client.get(reverse("dashboard:keys"))
    assert page.context["issued"] is None and "data-new-key" not in page.content.decode()


def test_revoke_key(people):
    key = services.issue_api_key(people.tenant, "old").api_key
    client = people.client("owner")
    confirm = client.get(reverse("dashboard:key-revoke", args=[key.pk]))
    assert confirm.status_code == 200 and b"Revoke" in confirm.content
    assert client.post(reverse("dashboard:key-revoke", args=[key.pk])).status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_create_key_requires_a_name(people):
    response = people.client("owner").post(reverse("dashboard:keys"), {"name": ""})
    assert response.status_code == 400
    assert not ApiKey.objects.filter(tenant=people.tenant).exists()


# --- members ------------------------------------------------------------------------------------------------


def test_admin_adds_existing_user_and_invites_new_one(people, mailoutbox):
    client = people.client("admin")
    assert (
        client.post(
            reverse("dashboard:members"), {"email": "outsider@example.com", "role": "member"}
        ).status_code
        == 302
    )
    assert Membership.objects.get(user=people.users["outsider"], tenant=people.tenant).role == "member"
    assert (
        client.post(
            reverse("dashboard:members"), {"email": "brand.new@example.com", "role": "admin"}
        ).status_code
        == 302
    )
    invited = Membership.objects.get(user__email="brand.new@example.com", tenant=people.tenant)
    assert invited.role == "admin" and not invited.user.has_usable_password()
    assert len(mailoutbox) == 1 and "Acme" in mailoutbox[0].subject and "/invite/" in mailoutbox[0].body


def test_invited_member_sets_a_password_and_is_signed_in(people, mailoutbox):
    """The emailed link says "Set your password" (not "Choose a new password": they never had one) and,
    once it is set, the new member lands on the inviting organisation's overview, signed in."""
    import re

    people.client("admin").post(reverse("dashboard:members"), {"email": "brand.new@example.com", "role": "member"})
    link = re.search(r"https?://[^/\s]+(/invite/\S+)", mailoutbox[0].body)[1]
    client = Client()
    form_page = client.get(link, follow=True)
    html = form_page.content.decode()
    assert "Set your password" in html and "Choose a new password" not in html
    done = client.post(form_page.redirect_chain[-1][0] if form_page.redirect_chain else link,
                       {"new_password1": "a-fresh-password-77", "new_password2": "a-fresh-password-77"})
    assert done.status_code == 302 and done["Location"] == reverse("dashboard:overview")
    overview = client.get(reverse("dashboard:overview"))
    assert overview.status_code == 200 and overview.context["tenant"] == people.tenant
    assert overview.context["user"].email == "brand.new@example.com"


def test_admin_cannot_grant_owner_or_touch_owners(people):
    client = people.client("admin")
    response = client.post(reverse("dashboard:members"), {"email": "x@example.com", "role": "owner"})
    assert response.status_code == 400
    owner = people.membership("owner")
    client.post(reverse("dashboard:member-role", args=[owner.pk]), {"role": "member"})
    client.post(reverse("dashboard:member-remove", args=[owner.pk]))
    owner.refresh_from_db()
    assert owner.role == "owner"
    member = people.membership("member")
    client.post(reverse("dashboard:member-role", args=[member.pk]), {"role": "owner"})
    member.refresh_from_db()
    assert member.role == "member"
    client.post(reverse("dashboard:member-role", args=[member.pk]), {"role": "admin"})
    member.refresh_from_db()
    assert member.role == "admin"


def test_owner_manages_roles_but_the_last_owner_stays(people):
    client = people.client("owner")
    owner = people.membership("owner")
    client.post(reverse("dashboard:member-role", args=[owner.pk]), {"role": "admin"})
    client.post(reverse("dashboard:member-remove", args=[owner.pk]))
    owner.refresh_from_db()
    assert owner.role == "owner"
    admin = people.membership("admin")
    client.post(reverse("dashboard:member-role", args=[admin.pk]), {"role": "owner"})
    admin.refresh_from_db()
    assert admin.role == "owner"
    # With a second owner, the first may step down.
    client.post(reverse("dashboard:member-role", args=[owner.pk]), {"role": "member"})
    owner.refresh_from_db()
    assert owner.role == "member"


def test_remove_member(people):
    member = people.membership("member")
    client = people.client("admin")
    assert client.post(reverse("dashboard:member-remove", args=[member.pk])).status_code == 302
    assert not Membership.objects.filter(pk=member.pk).exists()
    # The removed user now has no organisation.
    assert people.client("member").get(reverse("dashboard:overview"))["Location"] == reverse(
        "dashboard:welcome"
    )


# --- billing page -------------------------------------------------------------------------------------------


def test_billing_page_without_stripe_disables_buttons(people, settings):
    settings.STRIPE_API_KEY = ""
    page = people.client("owner").get(reverse("dashboard:billing"))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Free" in html and "not configured" in html
    assert re.search(r"<button[^>]*disabled[^>]*>\s*<svg[^>]*>.*?</svg>Manage billing", html, re.S)
    assert re.search(r"<button[^>]*disabled[^>]*>Upgrade to Pro", html)
    response = people.client("owner").post(
        reverse("dashboard:billing-checkout"), {"plan": "pro"}, follow=True
    )
    assert "not configured" in response.content.decode()


def test_billing_checkout_and_portal_redirect_to_stripe(people, settings, monkeypatch):
    from billing import services as billing
    from billing.models import Plan

    settings.STRIPE_API_KEY = "sk_test_dummy"
    Plan.objects.filter(code="pro").update(stripe_price_id="price_pro")
    calls: list[tuple] = []
    monkeypatch.setattr(
        billing,
        "checkout_url",
        lambda tenant, plan, **kw: (
            calls.append((tenant, plan.code, kw)) or "https://checkout.stripe.test/c/1"
        ),
    )
    monkeypatch.setattr(billing, "portal_url", lambda tenant, **kw: "https://billing.stripe.test/p/1")
    client = people.client("admin")
    page = client.get(reverse("dashboard:billing")).content.decode()
    assert not re.search(r"<button[^>]*disabled[^>]*>Upgrade to Pro", page)
    response = client.post(reverse("dashboard:billing-checkout"), {"plan": "pro"})
    assert response.status_code == 302 and response["Location"] == "https://checkout.stripe.test/c/1"
    assert calls[0][0] == people.tenant and calls[0][1] == "pro"
    assert calls[0][2]["success_url"].startswith("http://testserver/billing/")
    response = client.post(reverse("dashboard:billing-portal"))
    assert response["Location"] == "https://billing.stripe.test/p/1"
    # An unknown plan is refused on the page, not sent to Stripe.
    response = client.post(reverse("dashboard:billing-checkout"), {"plan": "nope"}, follow=True)
    assert "PLAN_NOT_FOUND" in response.content.decode() and len(calls) == 1


def test_every_form_carries_a_csrf_token(people):
    client = people.client("owner")
    for name in ("dashboard:keys", "dashboard:members", "dashboard:billing", "dashboard:overview"):
        html = client.get(reverse(name)).content.decode()
        for form in re.findall(r"<form[^>]*method=\"post\"[^>]*>.*?</form>", html, re.S):
            assert "csrfmiddlewaretoken" in form, (name, form[:120])
    enforcing = Client(enforce_csrf_checks=True)
    enforcing.force_login(people.users["owner"], backend=MODEL_BACKEND)
    assert enforcing.post(reverse("dashboard:keys"), {"name": "x"}).status_code == 403
