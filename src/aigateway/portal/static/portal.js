// aigateway portal: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // The page's words, in its language (set on <body> by the server).
  function t(name, fallback) {
    var value = document.body && document.body.getAttribute("data-t-" + name);
    return value || fallback;
  }

  function utcTime(date) {
    return date.toISOString().slice(11, 19) + " UTC";
  }

  function copyText(text, button) {
    function done() {
      var label = button.textContent;
      button.classList.add("copied");
      button.textContent = t("copied", "Copied!");
      setTimeout(function () { button.classList.remove("copied"); button.textContent = label; }, 1800);
    }
    function fallback() {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "sr-only";
      document.body.appendChild(area);
      area.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selectable */ }
      document.body.removeChild(area);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  }

  function init() {
    // On narrow screens the tab bar scrolls: keep the current tab in view, and show
    // a fade with an arrow on each side that has more tabs (classes more-left/more-right).
    var current = document.querySelector('.tabs a[aria-current="page"]');
    if (current && current.parentNode.scrollWidth > current.parentNode.clientWidth) {
      current.parentNode.scrollLeft = current.offsetLeft - current.parentNode.clientWidth / 2 + current.clientWidth / 2;
    }
    document.querySelectorAll("[data-scroll-hint]").forEach(function (bar) {
      var nav = bar.parentNode;
      function update() {
        var more = bar.scrollWidth - bar.clientWidth;
        nav.classList.toggle("more-left", bar.scrollLeft > 4);
        nav.classList.toggle("more-right", more > 4 && bar.scrollLeft < more - 4);
      }
      bar.addEventListener("scroll", update, { passive: true });
      window.addEventListener("resize", update);
      update();
    });

    // Copy buttons next to read-only fields: <button data-copy="#field-id">
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var field = document.querySelector(button.getAttribute("data-copy"));
        if (!field) return;
        field.select();
        copyText(field.value, button);
      });
    });
    // Select the whole value when a read-only field gets focus (easy manual copy).
    document.querySelectorAll("input[readonly]").forEach(function (field) {
      field.addEventListener("focus", function () { field.select(); });
    });

    // Forms that need a confirmation: <form data-confirm="question">
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) {
          event.preventDefault();
          return;
        }
        var flag = form.querySelector('input[name="confirm"]');
        if (flag) flag.value = "yes";
      });
    });

    // Copy buttons on code blocks.
    document.querySelectorAll("pre.code").forEach(function (pre) {
      var wrap = document.createElement("div");
      wrap.className = "code-block";
      pre.parentNode.insertBefore(wrap, pre);
      wrap.appendChild(pre);
      var button = document.createElement("button");
      button.type = "button";
      button.className = "btn btn-sm copy-code";
      button.textContent = t("copy", "Copy");
      button.setAttribute("aria-label", t("copy-code", "Copy code"));
      button.addEventListener("click", function () { copyText(pre.innerText, button); });
      wrap.appendChild(button);
    });

    // Code tabs (cURL / Python / Node.js); without script all panels show one after the other.
    document.querySelectorAll("[data-tabs]").forEach(function (group, groupIndex) {
      var panels = Array.prototype.slice.call(group.querySelectorAll(":scope > [data-tab]"));
      if (panels.length < 2) return;
      var list = document.createElement("div");
      list.className = "tablist";
      list.setAttribute("role", "tablist");
      var buttons = panels.map(function (panel, i) {
        var id = "tabpanel-" + groupIndex + "-" + i;
        panel.id = id;
        panel.setAttribute("role", "tabpanel");
        var b = document.createElement("button");
        b.type = "button";
        b.setAttribute("role", "tab");
        b.setAttribute("aria-controls", id);
        b.textContent = panel.getAttribute("data-tab");
        b.addEventListener("click", function () { select(i); });
        b.addEventListener("keydown", function (e) {
          if (e.key === "ArrowRight") { select((i + 1) % panels.length, true); }
          if (e.key === "ArrowLeft") { select((i + panels.length - 1) % panels.length, true); }
        });
        list.appendChild(b);
        return b;
      });
      function select(index, focus) {
        panels.forEach(function (p, i) { p.hidden = i !== index; });
        buttons.forEach(function (b, i) {
          b.setAttribute("aria-selected", i === index ? "true" : "false");
          b.tabIndex = i === index ? 0 : -1;
        });
        if (focus) buttons[index].focus();
      }
      group.insertBefore(list, group.firstChild);
      select(0);
    });

    // Live lists (Deposit tab): <div data-refresh="/url" data-refresh-every="15">
    document.querySelectorAll("[data-refresh]").forEach(function (box) {
      var url = box.getAttribute("data-refresh");
      var every = Math.max(5, parseInt(box.getAttribute("data-refresh-every"), 10) || 15) * 1000;
      var state = document.querySelector("[data-refresh-state]");
      var timer = null, busy = false;
      function later() { clearTimeout(timer); timer = setTimeout(tick, every); }
      function tick() {
        if (document.hidden || busy) { later(); return; }
        busy = true;
        if (state) state.textContent = t("checking", "Checking for new deposits…");
        fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
          .then(function (r) {
            if (r.redirected) { window.location.reload(); throw new Error("logged out"); }
            if (!r.ok) throw new Error(r.status);
            // the header balance follows a credit without a reload
            var balance = r.headers.get("X-Portal-Balance");
            var exact = r.headers.get("X-Portal-Balance-Exact");
            document.querySelectorAll("[data-balance]").forEach(function (el) {
              if (balance) el.textContent = decodeURIComponent(balance);
              if (exact && el.parentNode.title) {
                el.parentNode.title = el.parentNode.title.replace(/:.*$/, ": " + decodeURIComponent(exact) + " TMT");
              }
            });
            return r.text();
          })
          .then(function (html) {
            box.innerHTML = html;
            if (state) state.textContent = t("updated", "Updated {time}").replace("{time}", utcTime(new Date()));
          })
          .catch(function () { if (state) state.textContent = t("retry", "Could not refresh; retrying."); })
          .then(function () { busy = false; later(); });
      }
      // back on the tab: look at once rather than at the next turn
      document.addEventListener("visibilitychange", function () { if (!document.hidden) tick(); });
      later();
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
