// Security keys and passkeys, for the three pages that use them: adding a key
// (/account/security-keys/new), the second step (/login/2fa) and passwordless sign-in
// (/login). Each page holds its options in <script type="application/json"
// id="webauthn-options"> and one form per ceremony, `form[data-webauthn]`, with a hidden
// `credential` field and a button that stays hidden unless this browser can use keys.
// The browser's answer is posted with the form; the server decides everything else.
"use strict";

const MESSAGES = {
  NotAllowedError: "The key was not touched in time, or the request was cancelled. Try again.",
  InvalidStateError: "This key is already registered to your account.",
  NotSupportedError:
    "This key or device cannot do this. For a passkey you need one with a PIN, fingerprint or face unlock.",
  SecurityError: "Security keys cannot be used at this web address.",
};
// Browsers answer NotAllowedError, not NotSupportedError, when a key cannot be a passkey
// (they do not tell a page what a key lacks).
const NOT_A_PASSKEY =
  " If it keeps failing, this key may not work as a passkey: untick “Sign in without your password” to add it as a security key.";
const OTHER_ERROR = "Your browser could not use the key. Try again, or use another way to sign in.";
const UNSUPPORTED = "This browser cannot use security keys or passkeys.";

// Byte fields travel as unpadded base64url (webauthn-rs, and the browsers' JSON methods).
function fromB64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
}

function toB64url(buffer) {
  const bin = String.fromCharCode(...new Uint8Array(buffer));
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// For browsers without parseCreationOptionsFromJSON / parseRequestOptionsFromJSON.
function decodeOptions(options) {
  const ids = (list) => (list || []).forEach((c) => (c.id = fromB64url(c.id)));
  options.challenge = fromB64url(options.challenge);
  if (options.user) options.user.id = fromB64url(options.user.id);
  ids(options.excludeCredentials);
  ids(options.allowCredentials);
  return options;
}

// The shape of PublicKeyCredential.toJSON(), for browsers without it.
function credentialJSON(cred) {
  if (typeof cred.toJSON === "function") return cred.toJSON();
  const r = cred.response;
  const response = { clientDataJSON: toB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toB64url(r.attestationObject);
    response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
  } else {
    response.authenticatorData = toB64url(r.authenticatorData);
    response.signature = toB64url(r.signature);
    // Never "": an empty handle is not the same as none.
    if (r.userHandle) response.userHandle = toB64url(r.userHandle);
  }
  const json = {
    id: cred.id,
    rawId: toB64url(cred.rawId),
    type: cred.type,
    clientExtensionResults: cred.getClientExtensionResults(),
    response,
  };
  if (cred.authenticatorAttachment) json.authenticatorAttachment = cred.authenticatorAttachment;
  return json;
}

function showError(form, text) {
  // The form's own alert, or the page's (the server's message after a refused answer), so
  // that one alert says what happened last.
  let alert = form.querySelector(".alert[role=alert]") || document.getElementById("form-error");
  if (!alert) {
    alert = document.createElement("div");
    alert.className = "alert";
    alert.setAttribute("role", "alert");
    alert.tabIndex = -1;
    form.prepend(alert);
  }
  alert.textContent = text;
  alert.focus();
}

async function ceremony(form, button) {
  const register = form.dataset.webauthn === "register";
  if (register && !form.elements.name.value.trim()) {
    showError(form, "Give the key a name first.");
    return;
  }
  // Asked for when the sign-in is old: without it the server would refuse a spent touch.
  const password = form.elements.password;
  if (password && !password.value) {
    showError(form, "Enter your password first.");
    return;
  }
  // Parsed afresh each time: the conversions below turn strings into buffers in place.
  let options = JSON.parse(document.getElementById("webauthn-options").textContent);
  const passkey = register && form.elements.passwordless.checked;
  if (register) options = passkey ? options.passkey : options.key;
  const PKC = window.PublicKeyCredential;
  button.disabled = true;
  try {
    let cred;
    if (register) {
      const publicKey = PKC.parseCreationOptionsFromJSON
        ? PKC.parseCreationOptionsFromJSON(options)
        : decodeOptions(options);
      cred = await navigator.credentials.create({ publicKey });
    } else {
      const publicKey = PKC.parseRequestOptionsFromJSON
        ? PKC.parseRequestOptionsFromJSON(options)
        : decodeOptions(options);
      cred = await navigator.credentials.get({ publicKey });
    }
    form.elements.credential.value = JSON.stringify(credentialJSON(cred));
    form.submit();
  } catch (error) {
    button.disabled = false;
    const hint = passkey && error.name === "NotAllowedError" ? NOT_A_PASSKEY : "";
    showError(form, (MESSAGES[error.name] || OTHER_ERROR) + hint);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const usable = Boolean(window.PublicKeyCredential) && window.isSecureContext;
  for (const form of document.querySelectorAll("form[data-webauthn]")) {
    const button = form.querySelector("button[type=button]");
    const unsupported = form.querySelector(".webauthn-unsupported");
    if (!button) continue;
    if (!usable || !document.getElementById("webauthn-options")) {
      // The page's own sentence on the other ways in (.webauthn-why's sibling) stays.
      const why = unsupported && (unsupported.querySelector(".webauthn-why") || unsupported);
      if (why) why.textContent = UNSUPPORTED;
      continue;
    }
    if (unsupported) unsupported.hidden = true;
    button.hidden = false;
    button.addEventListener("click", () => ceremony(form, button));
    // Enter in the name field would post the form without an answer: start the key instead.
    // (The form.submit() that posts the answer does not fire this event.)
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!button.disabled) ceremony(form, button);
    });
  }
  // A page restored from the back-forward cache must not keep its buttons disabled.
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-webauthn] button[type=button]").forEach((b) => {
      b.disabled = false;
    });
  });
});
