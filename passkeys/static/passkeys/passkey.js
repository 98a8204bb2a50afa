/*
 * Passkeys on authserver's pages (README "Passkeys"). Served from our own origin, no inline
 * script, no dependencies. Each <form data-passkey="register|signin|second-factor"> has a hidden
 * "credential" field, a button [data-passkey-start] (hidden until this script finds WebAuthn)
 * and an [data-passkey-error] paragraph. The button fetches options (POST to data-options-url,
 * CSRF token from the form), asks the browser, puts the answer in "credential" and submits the
 * form: the server decides, and its answer is an ordinary page. A login page's form marked
 * data-passkey-autofill also offers passkeys in the username field's autofill (conditional
 * mediation) where the browser supports it.
 */
(function () {
  "use strict";

  function toBytes(value) {
    var text = value.replace(/-/g, "+").replace(/_/g, "/");
    while (text.length % 4) text += "=";
    var raw = atob(text);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      return Object.assign({}, item, { id: toBytes(item.id) });
    });
  }

  function creationOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.user = Object.assign({}, json.user, { id: toBytes(json.user.id) });
    options.excludeCredentials = descriptors(json.excludeCredentials);
    return options;
  }

  function requestOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.allowCredentials = descriptors(json.allowCredentials);
    return options;
  }

  function credentialJSON(credential) {
    var response = credential.response;
    var out = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toText(response.clientDataJSON) }
    };
    if (response.attestationObject) {
      out.response.attestationObject = toText(response.attestationObject);
      out.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      out.response.authenticatorData = toText(response.authenticatorData);
      out.response.signature = toText(response.signature);
      if (response.userHandle) out.response.userHandle = toText(response.userHandle);
    }
    return JSON.stringify(out);
  }

  // The page writes its messages, in its own language, on the error box (data-msg-*,
  // templates/accounts/_passkey_messages.html); the English here is the fallback of a page
  // copied without them.
  function message(form, name, fallback) {
    var box = form.querySelector("[data-passkey-error]");
    return (box && box.getAttribute("data-msg-" + name)) || fallback;
  }

  function showError(form, text) {
    var box = form.querySelector("[data-passkey-error]");
    if (!box) return;
    box.textContent = text;
    box.hidden = false;
  }

  function fetchOptions(form) {
    var token = form.querySelector("input[name=csrfmiddlewaretoken]").value;
    var body = new FormData();
    ["next", "step_up"].forEach(function (name) {
      var field = form.querySelector("input[name=" + name + "]");
      if (field) body.append(name, field.value);
    });
    return fetch(form.dataset.optionsUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": token, Accept: "application/json" },
      body: body
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) {
          throw new Error(data.error_description || message(form, "refused", "The request was refused."));
        }
        return data;
      });
    });
  }

  function submitWith(form, credential) {
    form.querySelector("input[name=credential]").value = credentialJSON(credential);
    form.submit();
  }

  function failed(form, error) {
    if (error && error.name === "AbortError") return;
    if (error && error.name === "NotAllowedError") {
      showError(
        form,
        message(form, "cancelled", "The passkey request was cancelled or timed out. Try again.")
      );
    } else if (error && error.name === "InvalidStateError") {
      showError(
        form,
        message(form, "registered", "This passkey is already registered for your account.")
      );
    } else {
      showError(
        form,
        (error && error.message) || message(form, "failed", "Your browser could not use a passkey.")
      );
    }
  }

  var conditional = null;

  function start(form) {
    var kind = form.dataset.passkey;
    if (conditional) conditional.abort();
    var box = form.querySelector("[data-passkey-error]");
    if (box) box.hidden = true;
    fetchOptions(form)
      .then(function (json) {
        if (kind === "register") {
          return navigator.credentials.create({ publicKey: creationOptions(json) });
        }
        return navigator.credentials.get({ publicKey: requestOptions(json) });
      })
      .then(function (credential) {
        if (credential) submitWith(form, credential);
      })
      .catch(function (error) {
        failed(form, error);
      });
  }

  function autofill(form) {
    if (!PublicKeyCredential.isConditionalMediationAvailable) return;
    PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
      if (!available) return;
      conditional = new AbortController();
      var signal = conditional.signal;
      var started = Date.now();
      fetchOptions(form)
        .then(function (json) {
          return navigator.credentials.get({
            publicKey: requestOptions(json),
            mediation: "conditional",
            signal: signal
          });
        })
        .then(function (credential) {
          if (credential) submitWith(form, credential);
        })
        .catch(function (error) {
          // Timed out while the page stayed open (the challenge lives 2 minutes): offer
          // autofill again with a new one. A quick refusal (no passkey here) is final.
          var timedOut = Date.now() - started > 60000;
          if (error && error.name === "NotAllowedError" && !signal.aborted && timedOut) {
            autofill(form);
          }
        });
    });
  }

  if (!window.PublicKeyCredential || !navigator.credentials) return;
  var forms = document.querySelectorAll("form[data-passkey]");
  Array.prototype.forEach.call(forms, function (form) {
    var button = form.querySelector("[data-passkey-start]");
    var block = form.closest("[data-passkey-block]");
    if (block) block.hidden = false;
    if (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        start(form);
      });
    }
    var unsupported = form.querySelector("[data-passkey-unsupported]");
    if (unsupported) unsupported.hidden = true;
    if (form.hasAttribute("data-passkey-autofill")) autofill(form);
  });
})();
