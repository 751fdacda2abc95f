// Passkeys on the hosted pages: sign in with one (a button, and the browser's
// autofill through conditional mediation), and add one on the account page.
// The ceremonies are the API's: options come as WebAuthn L3 JSON, and the
// browser's answer (credential.toJSON()) is posted back in a normal form, so
// the server, not this script, opens the session and decides where to go.
(function () {
  "use strict";

  var PKC = window.PublicKeyCredential;
  if (!PKC || !PKC.parseRequestOptionsFromJSON || !PKC.parseCreationOptionsFromJSON) {
    return; // no passkeys in this browser: the page works as it is without them
  }

  function show(element) {
    if (element) {
      element.hidden = false;
    }
  }

  function fail(form, error) {
    if (error && error.name === "AbortError") {
      return; // replaced by another request, or the user closed the dialog
    }
    var alert = form.querySelector("[data-passkey-error]");
    if (alert) {
      alert.textContent = alert.dataset.passkeyError;
      alert.hidden = false;
    }
  }

  function send(form, flow, credential) {
    form.elements.flow_id.value = flow.flow_id;
    form.elements.credential.value = JSON.stringify(credential.toJSON());
    form.submit();
  }

  async function json(response) {
    if (!response.ok) {
      throw new Error("the options request answered " + response.status);
    }
    return response.json();
  }

  // --- sign-in -------------------------------------------------------------------
  var signIn = document.getElementById("passkey-sign-in");
  if (signIn) {
    var pending = null;

    var signInWith = async function (mediation) {
      if (pending) {
        pending.abort();
      }
      var controller = new AbortController();
      pending = controller;
      var flow = await json(
        await fetch(signIn.dataset.options, {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-Tenant": signIn.dataset.tenant },
          body: "{}",
          credentials: "same-origin",
        })
      );
      var credential = await navigator.credentials.get({
        publicKey: PKC.parseRequestOptionsFromJSON(flow.publicKey),
        mediation: mediation,
        signal: controller.signal,
      });
      if (credential) {
        send(signIn, flow, credential);
      }
    };

    var button = signIn.querySelector("[data-passkey-button]");
    show(button);
    button.addEventListener("click", function () {
      signInWith("optional").catch(function (error) {
        fail(signIn, error);
      });
    });
    if (PKC.isConditionalMediationAvailable) {
      PKC.isConditionalMediationAvailable().then(function (available) {
        if (available) {
          // Offered by the email field's autofill ("username webauthn").
          signInWith("conditional").catch(function () {});
        }
      });
    }
  }

  // --- account page: add a passkey ----------------------------------------------------
  var add = document.getElementById("passkey-add");
  if (add) {
    var addButton = add.querySelector("[data-passkey-button]");
    show(addButton);
    addButton.addEventListener("click", async function () {
      try {
        var body = new URLSearchParams();
        body.set("csrf_token", add.elements.csrf_token.value);
        var flow = await json(
          await fetch(add.dataset.options, {
            method: "POST",
            body: body,
            credentials: "same-origin",
          })
        );
        var credential = await navigator.credentials.create({
          publicKey: PKC.parseCreationOptionsFromJSON(flow.publicKey),
        });
        if (credential) {
          send(add, flow, credential);
        }
      } catch (error) {
        fail(add, error);
      }
    });
  }
})();
