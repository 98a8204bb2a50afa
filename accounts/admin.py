"""User admin: search, filters, and no password hash on any page.

Every write goes through accounts.services (audited there): saving a user, changing or disabling
a password, deactivating, deleting, and clearing a login lockout. A password change or a
deactivation also ends the user's sessions (sessions.services.user_sessions_revoke); the admin is
the one place in accounts/ that calls into tokens/, as a view wiring two services together.

Admin rights are granted only by superusers (issue 14.1). A staff user who may change users
cannot set `is_staff`, `is_superuser`, groups or permissions (the fields are read-only for them
and a crafted POST is refused), nor change, reset, delete or run an action on an account that
holds admin rights (a superuser, or another staff account): taking over such an account is
taking its rights. The same holds for a group's permissions, which reach every member.
"""

from __future__ import annotations

from contextvars import ContextVar

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, UserCreationForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts.models import User, language_choices
from accounts.password_reset import password_reset_send
from accounts.registration import InviteRejected, invite_send
from accounts.services import (
    LoginUnavailable,
    login_lockout_clear,
    user_admin_save,
    user_deactivate,
    user_delete,
    user_password_disable,
    user_set_password,
)
from accounts.throttling import login_lockout_status
from accounts.verification import (
    email_admin_prepare,
    email_admin_saved,
    email_signup_pending,
    email_verification_send,
)
from authserver.counters import CacheUnavailable
from mfa.models import Factor, RecoveryCode
from mfa.services import second_factors_reset
from passkeys.models import Passkey
from selfservice import selectors as account_selectors
from selfservice import services as account_services
from sessions.models import Session
from sessions.services import user_sessions_revoke

# The request of the admin password-change view, for the form's save() (Django builds that form
# without the request). A ContextVar is per thread/task, so concurrent requests never mix.
_password_change_request: ContextVar[HttpRequest | None] = ContextVar(
    "password_change_request", default=None
)


# The request of the change view, for the read-only fields that link to the access page only
# when the viewer may act there (Django calls those fields without the request).
_admin_request: ContextVar[HttpRequest | None] = ContextVar("admin_request", default=None)


# The fields that grant admin rights. Only a superuser may set them.
PRIVILEGE_FIELDS = ("is_staff", "is_superuser", "groups", "user_permissions")


def _grants_rights(actor) -> bool:
    return bool(actor.is_active and actor.is_superuser)


def _may_manage(actor, target: User) -> bool:
    """Whether `actor` may change, reset, delete or act on the account `target` at all.

    An account with admin rights (superuser or staff) is managed by superusers only: whoever can
    set its password or deactivate it can take or remove those rights. A staff user may still
    edit their own account, minus PRIVILEGE_FIELDS."""
    if _grants_rights(actor):
        return True
    if target.pk is not None and target.pk == actor.pk:
        return True
    return not (target.is_superuser or target.is_staff)


def _stored_privileges(user: User) -> tuple[bool, bool]:
    """is_staff and is_superuser as stored, not as a form may have set them on the instance."""
    if user.pk is None:
        return (False, False)
    row = User.objects.filter(pk=user.pk).values_list("is_staff", "is_superuser").first()
    return row or (False, False)


def _privileges_changed(user: User, form: forms.ModelForm) -> bool:
    return bool(set(PRIVILEGE_FIELDS) & set(form.changed_data)) or (
        (user.is_staff, user.is_superuser) != _stored_privileges(user)
    )


class UserAdminCreationForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class UserAdminPasswordChangeForm(AdminPasswordChangeForm):
    """Django's admin password form, saving through user_set_password / user_password_disable
    so the change is stamped (ending older sessions) and audited."""

    def save(self, commit: bool = True) -> User:
        request = _password_change_request.get()
        actor = getattr(request, "user", None)
        if self.cleaned_data["set_usable_password"]:
            user_set_password(
                user=self.user,
                password=self.cleaned_data["password1"],
                actor=actor,
                request=request,
            )
        else:
            user_password_disable(user=self.user, actor=actor, request=request)
        # The credential changed: every session of the user ends now.
        user_sessions_revoke(user=self.user, reason=Session.RevokeReason.PASSWORD_CHANGED)
        return self.user


class UserAdminChangeForm(forms.ModelForm):
    """Django's change form shows a summary of the password hash; ours leaves it out entirely."""

    class Meta:
        model = User
        fields = (
            "username",
            "email",
            "email_verified",
            "first_name",
            "last_name",
            "language",
            "is_active",
            "is_staff",
            "is_superuser",
            "groups",
            "user_permissions",
        )


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserAdminChangeForm
    add_form = UserAdminCreationForm
    change_password_form = UserAdminPasswordChangeForm
    actions = [
        "clear_login_lockout",
        "deactivate_users",
        "resend_verification",
        "send_password_reset",
        "reset_second_factors",
    ]
    change_list_template = "admin/accounts/user/change_list.html"
    list_display = (
        "username",
        "email",
        "email_verified",
        "public_id",
        "is_active",
        "is_staff",
        "last_login",
    )
    list_filter = (
        "is_active",
        "email_verified",
        "is_staff",
        "is_superuser",
        "groups",
        "date_joined",
        "last_login",
    )
    search_fields = ("username", "email", "first_name", "last_name", "=public_id")
    ordering = ("username",)
    readonly_fields = (
        "public_id",
        "password_status",
        "last_login",
        "date_joined",
        "password_changed_at",
        "login_lockout",
        "second_factors",
        "live_sessions",
        "connected_apps",
    )
    fieldsets = (
        (None, {"fields": ("username", "public_id", "password_status")}),
        (
            "Personal info",
            {"fields": ("first_name", "last_name", "email", "email_verified", "language")},
        ),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined", "password_changed_at")}),
        ("Login protection", {"fields": ("login_lockout", "second_factors")}),
        ("Sessions and connected apps", {"fields": ("live_sessions", "connected_apps")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "email", "password1", "password2"),
            },
        ),
    )

    @admin.display(description="password")
    def password_status(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        state = "set" if obj.has_usable_password() else "not set (cannot sign in with a password)"
        url = reverse("admin:auth_user_password_change", args=[obj.pk])
        return format_html('{} &middot; <a href="{}">Change password</a>', state, url)

    @admin.display(description="login lockout")
    def login_lockout(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        try:
            status = login_lockout_status(user=obj, now=timezone.now())
        except CacheUnavailable:
            return "unknown (the cache is unavailable)"
        if status.locked:
            return (
                f"locked until {status.locked_until:%Y-%m-%d %H:%M:%S} UTC "
                '(use the action "Clear login lockout" to lift it)'
            )
        return f"not locked; {status.failures} recent failed attempt(s)"

    @admin.display(description="second factors")
    def second_factors(self, obj: User) -> str:
        """The user's confirmed factors and recovery codes left, never a secret. The action
        "Reset second factors" removes them (audited, the user is mailed)."""
        if obj.pk is None:
            return "-"
        factors = Factor.objects.filter(user=obj, confirmed_at__isnull=False).order_by("created_at")
        passkeys = Passkey.objects.filter(user=obj).order_by("created_at")
        if not factors and not passkeys:
            return "none"
        left = RecoveryCode.objects.filter(user=obj, used_at__isnull=True).count()
        rows = format_html_join(
            "",
            "<li>{} (set up {} UTC, last used {})</li>",
            (
                (
                    f.get_method_display(),
                    f"{f.confirmed_at:%Y-%m-%d %H:%M}",
                    f"{f.last_used_at:%Y-%m-%d %H:%M} UTC" if f.last_used_at else "never",
                )
                for f in factors
            ),
        )
        # Passkeys: name and dates only, never the credential id or public key.
        rows += format_html_join(
            "",
            "<li>passkey {} (added {} UTC, last used {}){}</li>",
            (
                (
                    p.name,
                    f"{p.created_at:%Y-%m-%d %H:%M}",
                    f"{p.last_used_at:%Y-%m-%d %H:%M} UTC" if p.last_used_at else "never",
                    " blocked: sign count went backwards" if p.flagged_at else "",
                )
                for p in passkeys
            ),
        )
        return format_html(
            '<ul style="margin:0;padding-left:1.2em">{}<li>{} unused recovery code(s)</li></ul>'
            'To remove them (lost phone), use the action "Reset second factors".',
            rows,
            left,
        )

    def _access_link(self, obj: User) -> str:
        request = _admin_request.get()
        if request is None or not self.has_change_permission(request, obj):
            return ""
        url = reverse("admin:accounts_user_access", args=[obj.pk])
        return format_html(' &middot; <a href="{}">End sessions or withdraw apps</a>', url)

    @admin.display(description="live sessions")
    def live_sessions(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        rows = account_selectors.account_sessions(user=obj, current=None)
        if not rows:
            return format_html("none{}", self._access_link(obj))
        items = format_html_join(
            "",
            "<li>{} ({}) &middot; {} &middot; {} &middot; last used {} UTC</li>",
            (
                (r.app, r.kind, r.device, r.ip or "no IP", f"{r.last_used_at:%Y-%m-%d %H:%M}")
                for r in rows
            ),
        )
        return format_html("{} live{}<ul>{}</ul>", len(rows), self._access_link(obj), items)

    @admin.display(description="connected apps")
    def connected_apps(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        apps = account_selectors.account_connected_apps(user=obj)
        if not apps:
            return "none"
        items = format_html_join(
            "",
            "<li>{}: {} &middot; {} live sign-in(s)</li>",
            ((a.name, " ".join(s for s, _, _ in a.scopes) or "-", a.live_sessions) for a in apps),
        )
        return format_html("<ul>{}</ul>", items)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        token = _admin_request.set(request)
        try:
            response = super().change_view(request, object_id, form_url, extra_context)
            # The read-only fields are computed while the template renders: render it here,
            # while the request is known.
            if hasattr(response, "render") and not response.is_rendered:
                response.render()
            return response
        finally:
            _admin_request.reset(token)

    def get_urls(self):
        return [
            # Invitations (a page of the user admin: `invite_user` does the same from a shell).
            # Before Django's "<path:object_id>/", which would take "invite/" for a user id.
            path(
                "invite/",
                self.admin_site.admin_view(self.invite_view),
                name="accounts_user_invite",
            ),
            path(
                "<path:object_id>/access/",
                self.admin_site.admin_view(self.access_view),
                name="accounts_user_access",
            ),
            *super().get_urls(),
        ]

    def access_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A user's live sessions (end one, end all) and connected apps (withdraw). Needs the
        permission to change the user (so a superuser's or another admin's only for a
        superuser), and to change sessions / delete consents for the actions; all audited."""
        user = self.get_object(request, object_id)
        if user is None:
            raise Http404("no such user")
        if not self.has_change_permission(request, user):
            raise PermissionDenied
        may_end = request.user.has_perm("sessions.change_session")
        may_withdraw = request.user.has_perm("oauth.delete_consent")
        if request.method == "POST":
            return self._access_act(request, user, may_end=may_end, may_withdraw=may_withdraw)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Sessions and apps of {user.get_username()}",
            "target": user,
            "rows": account_selectors.account_sessions(user=user, current=None),
            "apps": account_selectors.account_connected_apps(user=user),
            "may_end": may_end,
            "may_withdraw": may_withdraw,
        }
        return TemplateResponse(request, "admin/accounts/user/access.html", context)

    def _access_act(self, request, user: User, *, may_end: bool, may_withdraw: bool):
        action = request.POST.get("action")
        back = HttpResponseRedirect(reverse("admin:accounts_user_access", args=[user.pk]))
        if action in ("end_session", "end_all") and not may_end:
            raise PermissionDenied
        if action == "withdraw" and not may_withdraw:
            raise PermissionDenied
        if action == "end_session":
            session = account_selectors.account_session_get(
                user=user, session_id=request.POST.get("session", "")
            )
            if session is None:
                self.message_user(request, "That session has already ended.", messages.WARNING)
                return back
            account_services.account_session_end(
                user=user, session=session, request=request, actor=request.user
            )
            self.message_user(request, "The session was ended.", messages.SUCCESS)
        elif action == "end_all":
            ended = account_services.account_sessions_end_all(
                user=user, actor=request.user, request=request
            )
            self.message_user(request, f"Ended {ended} session(s).", messages.SUCCESS)
        elif action == "withdraw":
            ended = account_services.account_app_withdraw(
                user=user,
                client_id=request.POST.get("client", ""),
                request=request,
                actor=request.user,
            )
            if ended is None:
                self.message_user(request, "That app has no access any more.", messages.WARNING)
            else:
                self.message_user(
                    request, f"Access withdrawn; {ended} session(s) ended.", messages.SUCCESS
                )
        else:
            self.message_user(request, "Unknown action; nothing was changed.", messages.ERROR)
        return back

    def get_readonly_fields(self, request, obj=None):
        if _grants_rights(request.user):
            return self.readonly_fields
        # Read-only fields are left out of the ModelForm, so a crafted POST cannot set them.
        return (*self.readonly_fields, *PRIVILEGE_FIELDS)

    def has_change_permission(self, request, obj=None) -> bool:
        # Also guards the password-change view and every form save (Django checks it there).
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or _may_manage(request.user, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        # delete_selected asks this for each selected row, so a bulk delete is covered too.
        if not super().has_delete_permission(request, obj):
            return False
        return obj is None or _may_manage(request.user, obj)

    def _refuse_unmanageable(self, request, queryset) -> bool:
        """True (and an error message) when the selection holds an account the user may not
        manage; the action then changes nothing."""
        refused = [user for user in queryset if not _may_manage(request.user, user)]
        if refused:
            self.message_user(
                request,
                f"Only a superuser may act on an administrator account ({len(refused)} "
                "selected); nothing was changed.",
                messages.ERROR,
            )
        return bool(refused)

    def user_change_password(self, request, id, form_url=""):
        token = _password_change_request.set(request)
        try:
            return super().user_change_password(request, id, form_url)
        finally:
            _password_change_request.reset(token)

    def save_model(self, request, obj, form, change) -> None:
        # Second line of defence behind get_readonly_fields: whatever the form was, a
        # non-superuser never changes admin rights.
        if not _grants_rights(request.user) and _privileges_changed(obj, form):
            raise PermissionDenied
        send_link = email_admin_prepare(
            user=obj, changed_fields=form.changed_data, created=not change
        )
        user_admin_save(
            user=obj, changed_fields=form.changed_data, actor=request.user, request=request
        )
        # A new address gets a confirmation link unless the admin vouched for it (audited).
        email_admin_saved(
            user=obj,
            changed_fields=form.changed_data,
            send_link=send_link,
            actor=request.user,
            request=request,
        )
        if change and not obj.is_active and "is_active" in form.changed_data:
            user_sessions_revoke(user=obj, reason=Session.RevokeReason.USER_INACTIVE)

    def save_related(self, request, form, formsets, change) -> None:
        if not _grants_rights(request.user) and {"groups", "user_permissions"} & set(form.fields):
            raise PermissionDenied
        super().save_related(request, form, formsets, change)

    def delete_model(self, request, obj) -> None:
        if not _may_manage(request.user, obj):
            raise PermissionDenied
        user_delete(user=obj, actor=request.user, request=request)

    def delete_queryset(self, request, queryset) -> None:
        if any(not _may_manage(request.user, user) for user in queryset):
            raise PermissionDenied
        for user in queryset:
            user_delete(user=user, actor=request.user, request=request)

    @admin.action(description="Clear login lockout", permissions=["change"])
    def clear_login_lockout(self, request, queryset) -> None:
        if self._refuse_unmanageable(request, queryset):
            return
        cleared = 0
        try:
            for user in queryset:
                login_lockout_clear(user=user, actor=request.user, request=request)
                cleared += 1
        except LoginUnavailable:
            self.message_user(
                request,
                f"The cache is unavailable: cleared {cleared} of {len(queryset)} lockout(s).",
                messages.ERROR,
            )
            return
        self.message_user(request, f"Cleared the login lockout of {cleared} user(s).")

    @admin.action(description="Reset second factors", permissions=["change"])
    def reset_second_factors(self, request, queryset) -> None:
        """For users who lost their phone and recovery codes: every factor and code removed,
        audited (mfa.reset) and the user told by mail."""
        if self._refuse_unmanageable(request, queryset):
            return
        count = 0
        for user in queryset:
            if second_factors_reset(user=user, actor=request.user, request=request):
                count += 1
        self.message_user(request, f"Reset the second factors of {count} user(s).")

    @admin.action(description="Deactivate selected users", permissions=["change"])
    def deactivate_users(self, request, queryset) -> None:
        if self._refuse_unmanageable(request, queryset):
            return
        count = 0
        for user in queryset.filter(is_active=True):
            user_deactivate(user=user, actor=request.user, request=request)
            user_sessions_revoke(user=user, reason=Session.RevokeReason.USER_INACTIVE)
            count += 1
        self.message_user(request, f"Deactivated {count} user(s).")

    @admin.action(description="Send a password reset link", permissions=["change"])
    def send_password_reset(self, request, queryset) -> None:
        """Mail each selected user a reset link (queued in the outbox; audited per user as
        admin.password_reset_sent). Who may change a user may send; administrator accounts
        only by a superuser, as for every other action."""
        if self._refuse_unmanageable(request, queryset):
            return
        sent = skipped = 0
        for user in queryset:
            if password_reset_send(user=user, actor=request.user, request=request):
                sent += 1
            else:
                skipped += 1
        text = f"Queued a password reset link for {sent} user(s)."
        if skipped:
            text += (
                f" Skipped {skipped}: inactive, without an email address, or with password "
                "sign-in disabled."
            )
        self.message_user(request, text, messages.WARNING if skipped else messages.SUCCESS)

    @admin.action(description="Resend email verification", permissions=["change"])
    def resend_verification(self, request, queryset) -> None:
        if self._refuse_unmanageable(request, queryset):
            return
        sent = 0
        for user in queryset:
            if not user.email or user.email_verified:
                continue
            # A pending sign-up's new link also activates it; a deactivated account gets none.
            signup = email_signup_pending(user)
            if not user.is_active and not signup:
                continue
            email_verification_send(user=user, request=request, actor=request.user, signup=signup)
            sent += 1
        skipped = len(queryset) - sent
        note = (
            f" ({skipped} already verified, without an address, or deactivated)" if skipped else ""
        )
        self.message_user(request, f"Sent a confirmation link to {sent} user(s){note}.")

    def invite_view(self, request):
        # Inviting creates an account later: it needs the add permission.
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = InviteForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                invite_send(
                    email=form.cleaned_data["email"],
                    actor=request.user,
                    request=request,
                    language=form.cleaned_data["language"] or None,
                )
            except InviteRejected as exc:
                form.add_error("email", str(exc))
            else:
                self.message_user(request, "Invitation sent to " + form.cleaned_data["email"])
                return HttpResponseRedirect(reverse("admin:accounts_user_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Invite a user",
            "opts": self.opts,
            "form": form,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/accounts/user/invite.html", context)


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email address", max_length=254)
    language = forms.ChoiceField(
        label="Language of the invitation",
        choices=language_choices,
        initial=lambda: settings.LANGUAGE_CODE,
        required=False,  # left out: LANGUAGE_CODE
        help_text="The invitee has no saved language yet; their pages follow their browser.",
    )


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(DjangoGroupAdmin):
    """A group's permissions reach every member, the editor too if they belong to it: only a
    superuser may change them (issue 14.1). Others may still rename a group."""

    def get_readonly_fields(self, request, obj=None):
        if _grants_rights(request.user):
            return self.readonly_fields
        return (*self.readonly_fields, "permissions")

    def save_related(self, request, form, formsets, change) -> None:
        if not _grants_rights(request.user) and "permissions" in form.fields:
            raise PermissionDenied
        super().save_related(request, form, formsets, change)
