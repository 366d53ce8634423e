"""The member rules in ``accounts.services``: who may add, change and remove whom, and the last owner, with
the stable codes the dashboard shows."""

from __future__ import annotations

import pytest

from accounts import services
from core.errors import ServiceError

pytestmark = pytest.mark.django_db


def refused(call, *args) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call(*args)
    return caught.value


def test_add_member_rules(people):
    admin, member = people.membership("admin"), people.membership("member")
    assert refused(services.add_member, member, "x@example.com", "member").code == "PERMISSION_DENIED"
    assert refused(services.add_member, admin, "x@example.com", "owner").code == "ROLE_NOT_ALLOWED"
    error = refused(services.add_member, admin, " Member@Example.com ", "member")
    assert (error.code, error.message, error.details["field"]) == (
        "ALREADY_MEMBER", "This person is already a member.", "email"
    )
    added = services.add_member(admin, "outsider@example.com", "admin")
    assert not added.created_user and added.membership.role == "admin"
    added = services.add_member(admin, "New@Example.com", "member")
    assert added.created_user and added.membership.user.email == "new@example.com"


def test_invite_member_sends_the_set_password_link(people, mailoutbox):
    added = services.add_member(people.membership("owner"), "new@example.com", "member")
    services.invite_member(added.membership, inviter=people.users["owner"], domain="app.test", use_https=True)
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["new@example.com"]
    assert "https://app.test/invite/" in mailoutbox[0].body and "Acme" in mailoutbox[0].subject


def test_change_role_and_remove_keep_an_owner(people):
    owner, admin = people.membership("owner"), people.membership("admin")
    error = refused(services.change_role, admin, owner, "member")
    assert (error.code, error.message) == ("PERMISSION_DENIED", "Only an owner can change an owner's role.")
    error = refused(services.change_role, owner, owner, "admin")
    assert (error.code, error.message) == (
        "LAST_OWNER", "An organisation needs at least one owner: make someone else owner first."
    )
    error = refused(services.remove_member, owner, owner)
    assert (error.code, error.message) == (
        "LAST_OWNER", "The last owner cannot be removed: make someone else owner first."
    )
    assert refused(services.remove_member, admin, owner).message == "Only an owner can remove an owner."
    assert not services.can_remove(owner, owner) and services.can_remove(owner, admin)

    services.change_role(owner, admin, "owner")
    services.remove_member(admin, owner)  # two owners: one may go
    assert services.is_last_owner(admin)
