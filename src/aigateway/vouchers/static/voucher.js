// Voucher codes: catch a typo with the check character before the server is asked.
// Same rule as aigateway/vouchers/codes.py (Crockford base32, Luhn mod 32). The server checks again.
(function () {
  "use strict";
  var ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

  function normalise(text) {
    return text.replace(/[\s-]/g, "").toUpperCase().replace(/[IL]/g, "1").replace(/O/g, "0");
  }

  function checkChar(payload) {
    var factor = 2, total = 0;
    for (var i = payload.length - 1; i >= 0; i--) {
      var addend = factor * ALPHABET.indexOf(payload.charAt(i));
      factor = factor === 2 ? 1 : 2;
      total += Math.floor(addend / 32) + (addend % 32);
    }
    return ALPHABET.charAt((32 - (total % 32)) % 32);
  }

  // The messages come translated from the form's data-t-* attributes (the page's language).
  function text(form, name, fallback) {
    return form.getAttribute("data-t-" + name) || fallback;
  }

  function problem(form, code) {
    if (code.length !== 20) {
      return text(form, "length", "A voucher code has 20 characters; this one has {count}.")
        .replace("{count}", String(code.length));
    }
    for (var i = 0; i < code.length; i++) {
      if (ALPHABET.indexOf(code.charAt(i)) < 0) {
        return text(form, "char", "A voucher code has no {char}.").replace("{char}", code.charAt(i));
      }
    }
    if (checkChar(code.slice(0, 19)) !== code.charAt(19)) {
      return text(form, "typo", "This code has a typo: please check every character.");
    }
    return "";
  }

  document.querySelectorAll("[data-voucher-form]").forEach(function (form) {
    var input = form.querySelector("input[name=code]");
    var hint = form.querySelector("[data-voucher-hint]");
    var plain = hint ? hint.textContent : "";
    function validate(final) {
      var code = normalise(input.value);
      var message = code.length === 0 ? "" : problem(form, code);
      if (!final && code.length < 20) message = "";
      input.setCustomValidity(message);
      if (hint) hint.textContent = message || plain;
      input.setAttribute("aria-invalid", message ? "true" : "false");
      return !message;
    }
    input.addEventListener("input", function () { validate(false); });
    form.addEventListener("submit", function (event) {
      if (!validate(true)) { event.preventDefault(); input.reportValidity(); }
    });
  });
})();
