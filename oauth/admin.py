"""Admin for OAuth clients and remembered consent.

Every write goes through oauth.clients (validation, cache invalidation, audit). A new
confidential client's secret, and a regenerated one, is shown once on a page of its own (never
put into a message, which would be stored in the session or a cookie).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from oauth.clients import (
    ClientError,
    client_deactivate,
    client_delete,
    client_register,
    client_secret_rotate,
    client_update,
    client_validate,
)
from oauth.consents import consent_withdraw
from oauth.models import Client, Consent, GrantType

_SECRET_ATTRIBUTE = "_oauth_new_client_secret"  # noqa: S105 - an attribute name


class ClientForm(forms.ModelForm):
    grant_types = forms.MultipleChoiceField(
        choices=GrantType.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Client
        fields = (
            "name",
            "client_type",
            "is_active",
            "redirect_uris",
            "post_logout_redirect_uris",
            "grant_types",
            "scopes",
            "audiences",
            "access_token_lifetime",
            "refresh_without_offline_access",
            "pkce_required",
            "skip_consent",
            "require_mfa",
            "is_resource_server",
            "id_token_claims",
            "userinfo_claims",
            "access_token_claims",
        )
        widgets = {
            "id_token_claims": forms.Textarea(attrs={"rows": 3, "cols": 60}),
            "userinfo_claims": forms.Textarea(attrs={"rows": 3, "cols": 60}),
            "access_token_claims": forms.Textarea(attrs={"rows": 3, "cols": 60}),
            "redirect_uris": forms.Textarea(attrs={"rows": 3, "cols": 80}),
            "post_logout_redirect_uris": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "scopes": forms.TextInput(attrs={"size": 80}),
            "audiences": forms.TextInput(attrs={"size": 80}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["grant_types"] = self.instance.grant_type_list

    def clean_grant_types(self) -> str:
        return " ".join(self.cleaned_data["grant_types"])

    def _post_clean(self) -> None:
        super()._post_clean()
        if not self.errors:
            try:
                client_validate(self.instance)
            except ClientError as exc:
                # A field's own error goes next to it (claim mappings); the rest on top.
                field = exc.field if exc.field in self.fields else None
                self.add_error(field, str(exc))


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    form = ClientForm
    list_display = (
        "name",
        "client_id",
        "client_type",
        "pkce_required",
        "skip_consent",
        "is_resource_server",
        "is_active",
        "created_at",
    )
    list_filter = (
        "client_type",
        "is_active",
        "pkce_required",
        "skip_consent",
        "require_mfa",
        "is_resource_server",
    )
    search_fields = ("name", "client_id")
    readonly_fields = ("client_id", "secret_updated_at", "created_at", "updated_at")
    actions = ["regenerate_secret", "deactivate"]
    fieldsets = (
        (None, {"fields": ("name", "client_id", "client_type", "is_active")}),
        ("Redirects", {"fields": ("redirect_uris", "post_logout_redirect_uris")}),
        (
            "Grants and tokens",
            {
                "fields": (
                    "grant_types",
                    "scopes",
                    "audiences",
                    "access_token_lifetime",
                    "refresh_without_offline_access",
                    "pkce_required",
                )
            },
        ),
        (
            "Claims for the app",
            {
                "description": "Extra claims from user attributes, per token: one "
                "<code>claim = attribute</code> per line. The groups scope alone already adds a "
                "<code>groups</code> claim (group names) to all three.",
                "fields": ("id_token_claims", "userinfo_claims", "access_token_claims"),
            },
        ),
        ("Trust", {"fields": ("skip_consent", "require_mfa", "is_resource_server")}),
        ("History", {"fields": ("secret_updated_at", "created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # a client's type never changes (a secret would appear or vanish)
            return (*self.readonly_fields, "client_type")
        return self.readonly_fields

    def save_model(self, request, obj: Client, form, change: bool) -> None:
        if change:
            client_update(client=obj, actor=request.user, request=request)
        else:
            created = client_register(client=obj, actor=request.user, request=request)
            setattr(request, _SECRET_ATTRIBUTE, created.secret)

    def delete_model(self, request, obj: Client) -> None:
        client_delete(client=obj, actor=request.user, request=request)

    def delete_queryset(self, request, queryset) -> None:
        for client in queryset:
            client_delete(client=client, actor=request.user, request=request)

    def response_add(self, request, obj: Client, post_url_continue=None) -> HttpResponse:
        secret = getattr(request, _SECRET_ATTRIBUTE, None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return self._secret_page(request, obj, secret, created=True)

    def _secret_page(self, request, client: Client, secret: str, *, created: bool):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "client": client,
            "client_secret": secret,
            "created": created,
            "title": "Client secret",
        }
        response = TemplateResponse(request, "admin/oauth/client/secret.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(
        description="Deactivate the selected clients (ends their tokens)", permissions=["change"]
    )
    def deactivate(self, request: HttpRequest, queryset) -> None:
        clients = list(queryset)
        for client in clients:
            client_deactivate(client=client, actor=request.user, request=request)
        self.message_user(request, f"Deactivated {len(clients)} client(s); their tokens ended.")

    # Without `permissions`, Django offers an action to everyone who may see the list, so a
    # view-only staff user could rotate a secret and read the new one (issue 13.2.2).
    @admin.action(description="Regenerate the client secret (shown once)", permissions=["change"])
    def regenerate_secret(self, request: HttpRequest, queryset):
        clients = list(queryset)
        if len(clients) != 1 or clients[0].is_public:
            self.message_user(
                request,
                "Select exactly one confidential client to regenerate its secret.",
                messages.ERROR,
            )
            return None
        client = clients[0]
        if request.POST.get("confirm") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "client": client,
                "action_name": "regenerate_secret",
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                "title": "Regenerate client secret?",
            }
            return TemplateResponse(request, "admin/oauth/client/secret_confirm.html", context)
        rotated = client_secret_rotate(client=client, actor=request.user, request=request)
        return self._secret_page(request, rotated.client, rotated.secret, created=False)


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    """Read-only; deleting a consent withdraws it (oauth.consents.consent_withdraw): the user's
    grants to the client end, and the user approves the client again next time."""

    list_display = ("user", "client", "scope", "updated_at")
    list_select_related = ("user", "client")
    search_fields = ("user__username", "user__email", "client__name", "client__client_id")
    readonly_fields = ("user", "client", "scope", "created_at", "updated_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def delete_model(self, request, obj: Consent) -> None:
        consent_withdraw(consent=obj, actor=request.user, request=request)

    def delete_queryset(self, request, queryset) -> None:
        for consent in queryset.select_related("user", "client"):
            consent_withdraw(consent=consent, actor=request.user, request=request)
