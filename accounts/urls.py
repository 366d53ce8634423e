"""Dashboard account pages and authentication (mounted at the site root, namespace ``dashboard``, with the
jobs, webhook settings and billing pages; see ``audioseal_site/urls.py``)."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from accounts import forms, views

urlpatterns = [
    path("signup/", views.SignupView.as_view(), name="signup"),
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=forms.LoginForm, redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password-reset/",
        auth_views.PasswordResetView.as_view(
            email_template_name="registration/password_reset_email.txt",
            subject_template_name="registration/password_reset_subject.txt",
            success_url=reverse_lazy("dashboard:password_reset_done"),
        ),
        name="password_reset",
    ),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(success_url=reverse_lazy("dashboard:password_reset_complete")),
        name="password_reset_confirm",
    ),
    path("reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("invite/<uidb64>/<token>/", views.InviteAcceptView.as_view(), name="invite-accept"),
    path("welcome/", views.WelcomeView.as_view(), name="welcome"),
    path("organisation/switch/", views.SwitchTenantView.as_view(), name="switch-tenant"),
    path("keys/", views.ApiKeysView.as_view(), name="keys"),
    path("keys/<uuid:pk>/revoke/", views.ApiKeyRevokeView.as_view(), name="key-revoke"),
    path("keys/<uuid:pk>/edit/", views.ApiKeyEditView.as_view(), name="key-edit"),
    path("members/", views.MembersView.as_view(), name="members"),
    path("members/<int:pk>/role/", views.MemberRoleView.as_view(), name="member-role"),
    path("members/<int:pk>/remove/", views.MemberRemoveView.as_view(), name="member-remove"),
]
