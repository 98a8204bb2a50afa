"""The change of address on the account pages (/account/email; the profile page embeds its
form). Like the other sensitive actions it needs a recent sign-in: whoever can change the
address can reset the password. The rules are in accounts/verification.py: the new address
gets a confirmation link and replaces the old one only when it is confirmed; the old address
is then told. The answer does not say whether another account holds the new address.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from accounts.forms import EmailChangeForm
from accounts.verification import EmailChangeRejected, email_change_request
from selfservice.views import _render, account_page, recent_sign_in


@account_page("GET", "POST")
@recent_sign_in
def email_change(request: HttpRequest) -> HttpResponse:
    user = request.user
    sent = request.GET.get("sent") == "1"
    if request.method != "POST":
        return _render(request, "email.html", "profile", form=EmailChangeForm(), sent=sent)
    form = EmailChangeForm(request.POST)
    if form.is_valid():
        try:
            email_change_request(user=user, new_email=form.cleaned_data["email"], request=request)
        except EmailChangeRejected as exc:
            form.add_error("email", str(exc))
        else:
            return HttpResponseRedirect(reverse("account:email") + "?sent=1", status=303)
    return _render(request, "email.html", "profile", form=form, sent=False)
